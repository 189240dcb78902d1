"""Reading an embeddings GeoParquet file in QGIS's own Python, with whatever that Python has.

QGIS ships numpy, GDAL/OGR and PyQt, not pyarrow; Windows and macOS QGIS builds have GDAL's Parquet driver,
Debian's does not. So, in order:
1. pyarrow, when it imports (clay_core.parquet.reader);
2. GDAL's Parquet driver, when QGIS's GDAL has one (the `clay` metadata is read from the Parquet footer with
   the standard library, clay_core.parquet_meta);
3. the managed Clay runtime: its worker converts the file once into flat numpy arrays (`clay layer-cache`,
   clay_core.layer_cache) in a folder named by a hash of the file's path, size and modification time, so an
   edited or replaced file is converted again. Converting needs pyarrow in the runtime, never torch.
When none is there, the error is one line naming the fix: set up the Clay runtime.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from clay_core import layer_cache
from clay_core.errors import ClayInputError
from clay_core.layer_cache import LayerRows
from clay_core.parquet_meta import CLAY_KEY, GEO_KEY, geometry_crs, json_key, key_value_metadata, row_shape_of

PYARROW, GDAL, RUNTIME = "pyarrow", "GDAL Parquet driver", "Clay runtime (layer cache)"
# Cache folders kept (each about the size of the file's vectors); older ones go when a new one is made.
CACHE_KEEP = 8
CACHE_ENV = "CLAY_LAYER_CACHE"


def read_layer_rows(path: str | Path, feedback=None) -> tuple[LayerRows, str]:
    """The file's rows and which way they were read (PYARROW, GDAL or RUNTIME)."""
    path = Path(path)
    if not path.is_file():
        raise ClayInputError(f"embeddings file {path} does not exist")
    if pyarrow_available():
        from clay_core.parquet.reader import read_embeddings

        return layer_cache.from_embedding_table(read_embeddings(path)), PYARROW
    if gdal_parquet_driver() is not None:
        return read_with_gdal(path), GDAL
    return read_through_runtime(path, feedback), RUNTIME


def pyarrow_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a pyarrow built for another numpy that fails otherwise
        return False
    return True


def gdal_parquet_driver():
    """GDAL's Parquet driver in QGIS's GDAL, or None (Debian's GDAL is built without it)."""
    try:
        from osgeo import ogr
    except ImportError:
        return None
    return ogr.GetDriverByName("Parquet")


# ----------------------------------------------------------------------------------------------
# GDAL / OGR
# ----------------------------------------------------------------------------------------------


def read_with_gdal(path: Path) -> LayerRows:
    """Any single-layer OGR dataset with an `embeddings` list column (GeoParquet through the Parquet driver)."""
    from osgeo import ogr

    try:
        dataset = ogr.Open(str(path))
    except RuntimeError:  # GDAL with exceptions enabled
        dataset = None
    if dataset is None or dataset.GetLayerCount() == 0:
        raise ClayInputError(f"{path} could not be opened by GDAL")
    layer = dataset.GetLayer(0)
    definition = layer.GetLayerDefn()
    names = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    if "embeddings" not in names:
        raise ClayInputError(f"{path} has no 'embeddings' column; columns: {', '.join(names)}")
    wanted = {name: names.index(name) for name in (*layer_cache.LAYER_COLUMNS, "utm_bbox") if name in names}
    vector_index = names.index("embeddings")
    vectors, wkb, utm_bbox = [], [], []
    columns: dict[str, list[Any]] = {name: [] for name in wanted if name != "utm_bbox"}
    for feature in layer:
        vectors.append(_list_value(feature, vector_index))
        geometry = feature.GetGeometryRef()
        wkb.append(bytes(geometry.ExportToIsoWkb()) if geometry is not None else b"")
        for name, index in wanted.items():
            if name == "utm_bbox":
                utm_bbox.append(_list_value(feature, index) if feature.IsFieldSetAndNotNull(index) else None)
            else:
                columns[name].append(_scalar_value(feature, index))
    matrix = _stack_vectors(vectors)
    metadata, geo = _footer_metadata(path)
    crs = geometry_crs(geo) if geo else _layer_crs(layer)
    boxes = None if not utm_bbox or any(box is None or len(box) != 4 for box in utm_bbox) else np.asarray(utm_bbox)
    return LayerRows(
        vectors=matrix,
        columns=columns,
        wkb=wkb,
        shape_per_row=row_shape_of(metadata, matrix.shape[1]),
        metadata=metadata,
        crs=crs,
        utm_bbox=boxes,
    )


def _list_value(feature, index: int) -> list[float]:
    """A list field: OFTRealList / OFTIntegerList, or the JSON text GDAL gives for list types it does not map."""
    from osgeo import ogr

    kind = feature.GetFieldType(index)
    if kind == ogr.OFTRealList:
        return feature.GetFieldAsDoubleList(index)
    if kind == ogr.OFTIntegerList:
        return [float(v) for v in feature.GetFieldAsIntegerList(index)]
    text = feature.GetFieldAsString(index)
    try:
        return [float(v) for v in json.loads(text)]
    except (ValueError, TypeError):
        raise ClayInputError(f"the embeddings column is not a list of numbers (GDAL type {kind})") from None


def _scalar_value(feature, index: int) -> Any:
    from osgeo import ogr

    if not feature.IsFieldSetAndNotNull(index):
        return None
    kind = feature.GetFieldType(index)
    if kind in (ogr.OFTInteger, ogr.OFTInteger64):
        return feature.GetFieldAsInteger64(index)
    if kind == ogr.OFTReal:
        return feature.GetFieldAsDouble(index)
    if kind in (ogr.OFTDate, ogr.OFTDateTime):
        year, month, day = feature.GetFieldAsDateTime(index)[:3]
        return datetime.date(year, month, day)
    return feature.GetFieldAsString(index)


def _stack_vectors(vectors: list[list[float]]) -> np.ndarray:
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    widths = {len(v) for v in vectors}
    if len(widths) != 1:
        raise ClayInputError("embeddings rows have different lengths; not a Clay embeddings file")
    return np.asarray(vectors, dtype=np.float32)


def _footer_metadata(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`clay`, `geo`) metadata from the Parquet footer; ({}, {}) for files that are not Parquet or whose
    metadata is unreadable (the rows are still good: flat vectors, the CRS GDAL reports)."""
    try:
        footer = key_value_metadata(path)
        return json_key(footer, CLAY_KEY), json_key(footer, GEO_KEY)
    except ClayInputError:
        return {}, {}


def _layer_crs(layer) -> str | None:
    reference = layer.GetSpatialRef()
    return reference.ExportToWkt() if reference is not None else None


# ----------------------------------------------------------------------------------------------
# The Clay runtime's layer cache
# ----------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Where layer caches live: $CLAY_LAYER_CACHE, else `clay/layer-cache` in the active QGIS profile."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "clay" / "layer-cache"


def read_through_runtime(path: Path, feedback=None) -> LayerRows:
    root = cache_root()
    folder = root / layer_cache.cache_name(path)
    if not layer_cache.is_current(folder, path):
        convert_with_runtime(path, folder, feedback)
        prune_cache(root, keep=folder)
    return layer_cache.read_layer_cache(folder)


def convert_with_runtime(path: Path, folder: Path, feedback=None) -> None:
    from clay_qgis import worker

    try:
        worker.worker_python()
    except worker.RuntimeMissingError:
        message = (
            f"this QGIS cannot read GeoParquet by itself (no pyarrow, no GDAL Parquet driver) and no Clay "
            f"runtime is set up to convert it: {worker.SETUP_HINT}, then try again"
        )
        worker.notify_runtime_missing(message)  # QGIS desktop: offers to set the runtime up
        raise ClayInputError(message) from None
    except worker.WorkerError as exc:  # e.g. CLAY_PYTHON points at nothing: its own one-line message
        raise ClayInputError(f"cannot read {path.name} without the Clay runtime: {exc}") from None
    if feedback is not None:
        feedback.pushInfo(f"converting {path.name} with the Clay runtime (once per file version) into {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        worker.run_clay(["layer-cache", str(path), "-o", str(folder)], feedback)
    except worker.WorkerError as exc:
        raise ClayInputError(f"the Clay runtime could not convert {path.name}: {exc}") from None


def prune_cache(root: Path, keep: Path) -> None:
    """Keep the CACHE_KEEP most recently written caches (always `keep`)."""
    folders = [p for p in root.iterdir() if p.is_dir() and (p / layer_cache.MANIFEST).exists() and p != keep]
    folders.sort(key=lambda p: (p / layer_cache.MANIFEST).stat().st_mtime, reverse=True)
    for old in folders[CACHE_KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
