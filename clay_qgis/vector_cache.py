"""The in-memory vector cache: one embeddings GeoParquet as the plugin uses it (unit vectors for scoring, the
scalar columns and polygons for layers), read once and kept while the file is unchanged.

The file is read by clay_qgis.readers (pyarrow, GDAL's Parquet driver or the Clay runtime's layer cache,
whichever this QGIS has). The vectors stay here, keyed by the file (path, mtime, size) and view (chips or
patches), so scoring every chip on a click is one matrix-vector product and never touches QGIS attributes.
"""

from __future__ import annotations

import collections
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qgis.core import QgsCoordinateReferenceSystem

from clay_core.errors import ClayInputError
from clay_core.layer_cache import LayerRows
from clay_core.similarity import (
    SimilarityIndex,
    explode_patch_rings,
    explode_patch_vectors,
    exterior_rings,
    patch_grid_shape,
    patch_rings_crs84,
)
from clay_core.wkb import polygons_from_rings
from clay_qgis.readers import read_layer_rows
from clay_qgis.schema import CHIP_FIELDS, MODES, PATCH_FIELDS

CACHE_SIZE = 2  # a 1M x 768 file is 3 GB of vectors: keep few


@dataclass
class EmbeddingSet:
    """One embeddings file as the plugin uses it: unit vectors, scalar columns and geometry per row."""

    path: Path
    mode: str  # "chips" or "patches"
    index: SimilarityIndex
    columns: dict[str, list[Any]]  # scalar attributes per row (CHIP_FIELDS [+ PATCH_FIELDS])
    wkb: list[bytes]
    crs: QgsCoordinateReferenceSystem
    metadata: dict[str, Any]
    shape_per_row: tuple[int, ...]
    reader: str = ""  # how the file was read (clay_qgis.readers: pyarrow, GDAL, the Clay runtime's cache)
    # The background thread building the similarity sketch (large files only; see clay_qgis.session.score_query).
    sketch_build: threading.Thread | None = field(default=None, repr=False)
    _rows_by_key: dict[tuple, int] | None = field(default=None, repr=False)
    _rings: list[np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def dim(self) -> int:
        return self.index.dim

    @property
    def model_name(self) -> str:
        return str(self.metadata.get("model") or self.metadata.get("model_name") or "unknown model")

    @property
    def level(self) -> str:
        return str(self.metadata.get("level", "?"))

    def key(self, row: int) -> tuple:
        if self.mode == "patches":
            return (self.columns["chip_id"][row], self.columns["patch_row"][row], self.columns["patch_col"][row])
        return (self.columns["chip_id"][row],)

    def row_of_key(self, key: tuple) -> int | None:
        if self._rows_by_key is None:
            self._rows_by_key = {self.key(row): row for row in range(len(self))}
        return self._rows_by_key.get(tuple(key))

    @property
    def rings(self) -> list[np.ndarray]:
        """Exterior rings in the layer CRS, parsed once: used to find the chip under a point."""
        if self._rings is None:
            self._rings = exterior_rings(self.wkb)
        return self._rings

    def rows_of_chip(self, chip_id: str) -> list[int]:
        return [row for row, value in enumerate(self.columns["chip_id"]) if value == chip_id]

    def describe(self) -> str:
        return (
            f"{self.model_name}, level {self.level}, {self.dim} values per "
            f"{'patch' if self.mode == 'patches' else 'chip'}, {len(self)} rows"
        )


_CACHE: collections.OrderedDict[tuple, EmbeddingSet] = collections.OrderedDict()


def cache_key(path: str | Path, mode: str) -> tuple:
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError:
        raise ClayInputError(f"embeddings file {path} does not exist") from None
    return (str(path), stat.st_mtime_ns, stat.st_size, mode)


def load_embedding_set(path: str | Path, mode: str = "chips", feedback=None) -> EmbeddingSet:
    """The file's vectors and attributes, from the cache when the file has not changed since. `feedback`
    (a QgsProcessingFeedback) hears about a first conversion through the Clay runtime."""
    if mode not in MODES:
        raise ClayInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    key = cache_key(path, mode)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    embedding_set = _read_embedding_set(Path(key[0]), mode, feedback)
    _CACHE[key] = embedding_set
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return embedding_set


def clear_cache() -> None:
    _CACHE.clear()


def _patch_rings(data: LayerRows, h: int, w: int) -> np.ndarray:
    """Patch polygons by the writer's own rule (exact UTM patch corners to CRS84) when the file has the native
    footprint; files from other tools only have the chip polygon, so interpolate inside it."""
    epsg = data.columns.get("epsg")
    if data.utm_bbox is not None and epsg is not None and None not in epsg:
        return patch_rings_crs84(data.utm_bbox, np.asarray(epsg), h, w)
    return explode_patch_rings(exterior_rings(data.wkb), h, w)


def _read_embedding_set(path: Path, mode: str, feedback=None) -> EmbeddingSet:
    data, reader = read_layer_rows(path, feedback)
    n = len(data)
    columns = {name: data.columns.get(name, [None] * n) for name, _ in CHIP_FIELDS}
    if not any(columns["chip_id"]):
        columns["chip_id"] = [str(row) for row in range(n)]  # files from other tools: the row is the id
    wkb = data.wkb
    vectors = data.vectors
    already_exploded = "patch_row" in data.columns
    if already_exploded:
        columns.update({name: data.columns.get(name, [None] * n) for name, _ in PATCH_FIELDS})
    if mode == "patches" and not already_exploded:
        h, w = patch_grid_shape(data.shape_per_row)
        vectors = explode_patch_vectors(vectors, data.shape_per_row)
        wkb = polygons_from_rings(_patch_rings(data, h, w))
        columns = {name: [value for value in values for _ in range(h * w)] for name, values in columns.items()}
        grid_rows, grid_cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        columns["patch_row"] = np.tile(grid_rows.ravel(), n).tolist()
        columns["patch_col"] = np.tile(grid_cols.ravel(), n).tolist()
    effective_mode = "patches" if (mode == "patches" or already_exploded) else "chips"
    return EmbeddingSet(
        path=path,
        mode=effective_mode,
        index=SimilarityIndex(vectors),
        columns=columns,
        wkb=wkb,
        crs=crs_from_geo(data.crs),
        metadata=data.metadata,
        shape_per_row=data.shape_per_row,
        reader=reader,
    )


def crs_from_geo(crs: Any) -> QgsCoordinateReferenceSystem:
    """The layer CRS from the GeoParquet `geo` CRS (PROJJSON, a string, or absent = OGC:CRS84)."""
    if (
        crs is None
        or crs == "OGC:CRS84"
        or (isinstance(crs, dict) and crs.get("id") == {"authority": "OGC", "code": "CRS84"})
    ):
        # CRS84 is lon/lat like QGIS's EPSG:4326 layers (QGIS always uses x = lon); EPSG:4326 is
        # what every QGIS project and transform knows best.
        return QgsCoordinateReferenceSystem("EPSG:4326")
    result = QgsCoordinateReferenceSystem()
    text = json.dumps(crs) if isinstance(crs, dict) else str(crs)
    if not result.createFromUserInput(text) or not result.isValid():
        raise ClayInputError(
            "the embeddings file's CRS (geo metadata) is not understood by QGIS/PROJ; "
            "rewrite the file with OGC:CRS84 geometry"
        )
    return result
