"""An embeddings file as flat numpy arrays: what the QGIS side needs to show and score it, readable with
numpy alone.

Why: QGIS's Python has numpy, GDAL and PyQt but often no pyarrow, and many GDAL builds (Debian's) have no
Parquet driver. The managed Clay runtime has pyarrow, so it converts a GeoParquet file once
(`clay layer-cache EMB.gpq -o FOLDER`) into `.npy` files that the plugin loads in-process, without pickle.

A cache folder holds `manifest.json` (source file path/size/mtime, metadata, CRS, row shape, columns),
`vectors.npy` [N, D] float32, `wkb.npy` (all geometries back to back, uint8) with `wkb_offsets.npy` [N + 1],
`utm_bbox.npy` [N, 4] when the file has the native footprint, and one `column.NAME.npy` per scalar column
(`column.NAME.nulls.npy` marks missing values). It is written beside its final name and renamed into place.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clay_core.errors import ClayInputError

if TYPE_CHECKING:
    from clay_core.parquet.reader import EmbeddingTable

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# The scalar columns the plugin shows or keys rows by (the vectors and geometry are stored on their own).
LAYER_COLUMNS = ("chip_id", "date", "source_url", "row", "col", "nodata_fraction", "patch_row", "patch_col", "epsg")


@dataclass
class LayerRows:
    """What the plugin needs of an embeddings file, in plain numpy and Python values (no pyarrow)."""

    vectors: np.ndarray  # [N, D] float32
    columns: dict[str, list[Any]]  # LAYER_COLUMNS the file has; None for missing values
    wkb: list[bytes]  # geometry per row
    shape_per_row: tuple[int, ...]
    metadata: dict[str, Any]  # the file's `clay` metadata ({} for files from other tools)
    crs: Any  # PROJJSON dict or string from the `geo` metadata; None when the file has none
    utm_bbox: np.ndarray | None = None  # [N, 4] native footprint, None when absent or incomplete

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def from_embedding_table(data: EmbeddingTable) -> LayerRows:
    """LayerRows of a file read with pyarrow (clay_core.parquet.reader.read_embeddings)."""
    table = data.table
    columns = {name: table.column(name).to_pylist() for name in LAYER_COLUMNS if name in table.column_names}
    utm_bbox = None
    if "utm_bbox" in table.column_names and table.column("utm_bbox").null_count == 0:
        utm_bbox = np.asarray(table.column("utm_bbox").to_pylist(), dtype=np.float64).reshape(-1, 4)
    return LayerRows(
        vectors=data.vectors,
        columns=columns,
        wkb=data.geometry_wkb,
        shape_per_row=data.shape_per_row,
        metadata=data.metadata,
        crs=data.crs,
        utm_bbox=utm_bbox,
    )


# ----------------------------------------------------------------------------------------------
# Which folder belongs to which file
# ----------------------------------------------------------------------------------------------


def source_identity(path: str | Path) -> dict[str, Any]:
    """What makes a cache current: the file's absolute path, size and modification time."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError:
        raise ClayInputError(f"embeddings file {path} does not exist") from None
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_name(path: str | Path) -> str:
    """Folder name for a file's cache: a hash of its identity, so a changed file gets a new folder."""
    identity = source_identity(path)
    text = f"{identity['path']}\0{identity['size']}\0{identity['mtime_ns']}\0{FORMAT_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def is_current(folder: str | Path, source: str | Path) -> bool:
    """True when `folder` holds a complete cache made from the file as it is now."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("format") == FORMAT_VERSION and manifest.get("source") == source_identity(source)


# ----------------------------------------------------------------------------------------------
# Columns <-> arrays (no pickle: strings as numpy unicode, dates as datetime64[D])
# ----------------------------------------------------------------------------------------------


def _kind(values: list[Any]) -> str:
    sample = next((value for value in values if value is not None), None)
    if isinstance(sample, (int, np.integer)):  # bool too (a subclass of int)
        return "int"
    if isinstance(sample, (float, np.floating)):
        return "float"
    if isinstance(sample, datetime.date):
        return "date"
    return "str"


_FILL = {"int": 0, "float": np.nan, "date": None, "str": ""}
_NUMBER_DTYPE: dict[str, type[np.number]] = {"int": np.int64, "float": np.float64}


def _encode(values: list[Any]) -> tuple[str, np.ndarray, np.ndarray | None]:
    kind = _kind(values)
    nulls = np.array([value is None for value in values], dtype=bool)
    filled = [_FILL[kind] if value is None else value for value in values]
    if kind == "date":
        array = np.array(filled, dtype="datetime64[D]")
    elif kind == "str":
        array = np.array([str(value) for value in filled], dtype=str) if filled else np.zeros(0, dtype="U1")
    else:
        array = np.array(filled, dtype=_NUMBER_DTYPE[kind])
    return kind, array, nulls if nulls.any() else None


def _decode(array: np.ndarray, nulls: np.ndarray | None) -> list[Any]:
    values = array.tolist()  # datetime64[D] -> datetime.date, unicode -> str, numbers -> int/float
    if nulls is not None:
        values = [None if missing else value for value, missing in zip(values, nulls.tolist(), strict=True)]
    return values


# ----------------------------------------------------------------------------------------------
# Writing (the worker) and reading (in-process)
# ----------------------------------------------------------------------------------------------


def check_destination(folder: str | Path) -> Path:
    """`folder` may be written: it does not exist, is empty, or holds a layer cache (which is replaced).
    Anything else is refused: `-o` naming a folder of the user's own files must never delete them."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ClayInputError(f"{folder} is a file, not a folder: give a new folder for the layer cache")
    if not folder.is_dir() or not any(folder.iterdir()):
        return folder
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not (isinstance(manifest, dict) and "format" in manifest and "source" in manifest):
        names = sorted(entry.name for entry in folder.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ClayInputError(
            f"{folder} is not a Clay layer cache (it holds {shown}): give a new or empty folder; "
            "only an older layer cache is replaced"
        )
    return folder


def write_layer_cache(rows: LayerRows, folder: str | Path, source: str | Path) -> Path:
    """Write `rows` (made from the file `source`) as a cache folder; replaces an older cache of that name,
    never a folder that is not a cache (see check_destination)."""
    folder = check_destination(folder)
    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        columns = {}
        for name, values in rows.columns.items():
            kind, array, nulls = _encode(list(values))
            np.save(staging / f"column.{name}.npy", array, allow_pickle=False)
            if nulls is not None:
                np.save(staging / f"column.{name}.nulls.npy", nulls, allow_pickle=False)
            columns[name] = kind
        np.save(staging / "vectors.npy", np.ascontiguousarray(rows.vectors, dtype=np.float32), allow_pickle=False)
        lengths = np.array([len(value) for value in rows.wkb], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        blob = np.frombuffer(b"".join(rows.wkb), dtype=np.uint8)
        np.save(staging / "wkb.npy", blob, allow_pickle=False)
        np.save(staging / "wkb_offsets.npy", offsets, allow_pickle=False)
        if rows.utm_bbox is not None:
            np.save(staging / "utm_bbox.npy", np.asarray(rows.utm_bbox, dtype=np.float64), allow_pickle=False)
        manifest = {
            "format": FORMAT_VERSION,
            "source": source_identity(source),
            "rows": len(rows),
            "shape_per_row": list(rows.shape_per_row),
            "metadata": rows.metadata,
            "crs": rows.crs,
            "columns": columns,
        }
        # The manifest goes last: a folder without one is never taken for a finished cache.
        (staging / MANIFEST).write_text(json.dumps(manifest, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def read_layer_cache(folder: str | Path) -> LayerRows:
    """LayerRows from a cache folder, with numpy only. The vectors are read, not memory-mapped: on Windows a
    mapped file could not be replaced or pruned while QGIS holds the layer."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ClayInputError(f"{folder} is not a Clay layer cache: {exc}") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise ClayInputError(f"{folder} is a layer cache of another format ({manifest.get('format')}); delete it")
    columns = {}
    for name in manifest["columns"]:
        nulls_path = folder / f"column.{name}.nulls.npy"
        nulls = np.load(nulls_path, allow_pickle=False) if nulls_path.exists() else None
        columns[name] = _decode(np.load(folder / f"column.{name}.npy", allow_pickle=False), nulls)
    blob = np.load(folder / "wkb.npy", allow_pickle=False).tobytes()
    offsets = np.load(folder / "wkb_offsets.npy", allow_pickle=False).tolist()
    wkb = [blob[start:end] for start, end in zip(offsets[:-1], offsets[1:], strict=True)]
    bbox_path = folder / "utm_bbox.npy"
    return LayerRows(
        vectors=np.load(folder / "vectors.npy", allow_pickle=False),
        columns=columns,
        wkb=wkb,
        shape_per_row=tuple(manifest["shape_per_row"]),
        metadata=manifest["metadata"],
        crs=manifest["crs"],
        utm_bbox=np.load(bbox_path, allow_pickle=False) if bbox_path.exists() else None,
    )
