"""A tiny XYZ tile server on 127.0.0.1 for tests: 256x256 PNG tiles in EPSG:3857 cut on the fly from a
scene's true-colour bands (red, green, blue files), so QGIS's wms provider can read "web imagery" offline.

Pixels are rendered as Sentinel-2 L2A TCI does it (ESA's convention: reflectance DN 0..2000 -> 1..255, 0 =
no data, transparent): the plugin reads 8-bit RGB web imagery back with that convention.
"""

from __future__ import annotations

import http.server
import math
import re
import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

WEB_MERCATOR_HALF = 20037508.342789244
TILE = 256
TCI_SATURATION_DN = 2000.0
TILE_PATH = re.compile(r"^/(\d+)/(\d+)/(\d+)\.png$")


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    size = 2 * WEB_MERCATOR_HALF / 2**z
    left = -WEB_MERCATOR_HALF + x * size
    top = WEB_MERCATOR_HALF - y * size
    return left, top - size, left + size, top


@dataclass
class TrueColourScene:
    """Red, green, blue band files of one scene, held in memory once."""

    red: Path
    green: Path
    blue: Path
    _cube: object = field(init=False, default=None, repr=False)
    _transform: object = field(init=False, default=None, repr=False)
    _crs: object = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        import numpy as np
        import rasterio

        planes = []
        for path in (self.red, self.green, self.blue):
            with rasterio.open(path) as dataset:
                planes.append(dataset.read(1).astype(np.float32))
                self._transform, self._crs = dataset.transform, dataset.crs
        self._cube = np.stack(planes)

    def png(self, z: int, x: int, y: int) -> bytes | None:
        """The tile as PNG bytes (RGBA, transparent outside the scene), or None when it misses the scene."""
        import numpy as np
        from affine import Affine
        from rasterio.errors import NotGeoreferencedWarning
        from rasterio.io import MemoryFile
        from rasterio.warp import Resampling, reproject

        left, _, right, top = tile_bounds(z, x, y)
        target = Affine((right - left) / TILE, 0.0, left, 0.0, -(right - left) / TILE, top)
        warped = np.full((3, TILE, TILE), np.nan, dtype=np.float32)
        reproject(
            self._cube,
            warped,
            src_transform=self._transform,
            src_crs=self._crs,
            dst_transform=target,
            dst_crs="EPSG:3857",
            resampling=Resampling.bilinear,
            src_nodata=0,
            dst_nodata=np.nan,
        )
        valid = np.isfinite(warped).all(axis=0)
        if not valid.any():
            return None
        rgb = np.clip(np.nan_to_num(warped) * 255.0 / TCI_SATURATION_DN, 1, 255).astype(np.uint8)
        rgba = np.concatenate([rgb, (valid * 255).astype(np.uint8)[None]])
        with warnings.catch_warnings(), MemoryFile() as memory:  # a PNG tile has no georeferencing, by design
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with memory.open(driver="PNG", width=TILE, height=TILE, count=4, dtype="uint8") as png:
                png.write(rgba)
            return memory.read()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _TileServer

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.server.requests.append(self.path)
        if self.server.on_request is not None:
            self.server.on_request()
        prefix = f"/{self.server.token}"
        match = TILE_PATH.match(self.path[len(prefix) :]) if self.path.startswith(prefix + "/") else None
        if self.server.fail_with or not match:
            self.send_error(self.server.fail_with or 404)
            return
        body = self.server.scene.png(*(int(v) for v in match.groups()))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet: pytest shows failures, not every tile
        return


class _TileServer(http.server.ThreadingHTTPServer):
    def __init__(self, scene: TrueColourScene, fail_with: int | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scene = scene
        self.fail_with = fail_with
        self.requests: list[str] = []
        # A fresh path per server: the OS reuses ports, and QGIS keeps tiles by URL (its tile cache and its network
        # disk cache), so a failing server on a port a good one had would otherwise be answered from the cache.
        self.token = uuid.uuid4().hex
        self.on_request = None  # called (from the server thread) on every request, e.g. to press Cancel


@contextmanager
def xyz_server(scene: TrueColourScene, fail_with: int | None = None) -> Iterator[_TileServer]:
    """Serve `scene` as XYZ tiles (`fail_with`: answer every request with this HTTP status instead)."""
    server = _TileServer(scene, fail_with)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def xyz_uri(server: _TileServer, zmax: int = 15) -> str:
    """The wms provider's data source string of an XYZ layer on `server`."""
    port = server.server_address[1]
    return f"type=xyz&url=http://127.0.0.1:{port}/{server.token}/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax={zmax}&zmin=0"


def lonlat_to_web_mercator(lon: float, lat: float) -> tuple[float, float]:
    x = math.radians(lon) * 6378137.0
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * 6378137.0
    return x, y
