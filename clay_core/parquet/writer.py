"""Writing embeddings GeoParquet files (pyarrow; pyproj for the CRS84 corners). See clay_core/parquet/__init__.py."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clay_core import wkb
from clay_core.atomic import atomic_output
from clay_core.errors import ClayInputError
from clay_core.parquet.reader import (
    BBOX,
    BBOX_FIELDS,
    CLAY_KEY,
    EMBEDDINGS,
    GEO_KEY,
    GEOMETRY,
    GEOPARQUET_VERSION,
    SATCLIP,
)
from clay_core.patches import exploded_row_shape, patch_bounds, per_patch
from clay_core.provenance import public_source

# Keep a row group to about this many bytes of embeddings: group-level rows are 4.7 MB each and one
# row group per file would make every reader hold the whole file in memory.
ROW_GROUP_BYTES = 128 * 1024 * 1024


class ChipLike(Protocol):
    """What the writer needs from a chip (clay_core.sources.base.ChipRecord has all of it). Read-only
    properties, so a frozen dataclass such as ChipRecord matches."""

    @property
    def chip_id(self) -> str: ...

    @property
    def source_url(self) -> str: ...

    @property
    def date(self) -> datetime.date: ...

    @property
    def epsg(self) -> int: ...

    @property
    def utm_bounds(self) -> tuple[float, float, float, float]: ...

    @property
    def row(self) -> int: ...

    @property
    def col(self) -> int: ...

    @property
    def mgrs(self) -> str | None: ...


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


def _ring_xy(bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counter-clockwise 5-point rings [N, 5] for boxes [N, 4] (xmin, ymin, xmax, ymax)."""
    xmin, ymin, xmax, ymax = bounds.T
    xs = np.stack([xmin, xmax, xmax, xmin, xmin], axis=1)
    ys = np.stack([ymin, ymin, ymax, ymax, ymin], axis=1)
    return xs, ys


def utm_boxes_to_crs84(bounds: np.ndarray, epsgs: np.ndarray) -> np.ndarray:
    """Rings [N, 5, 2] in OGC:CRS84 (x = lon, y = lat) of the UTM boxes; only the 4 corners are
    transformed (no densification), exactly as Clay v0 did, so a polygon's vertices are the chip corners."""
    from pyproj import Transformer

    bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    epsgs = np.asarray(epsgs).reshape(-1)
    xs, ys = _ring_xy(bounds)
    lon = np.empty_like(xs)
    lat = np.empty_like(ys)
    for epsg in np.unique(epsgs):
        chosen = epsgs == epsg
        transformer = Transformer.from_crs(int(epsg), "OGC:CRS84", always_xy=True)
        lon[chosen], lat[chosen] = transformer.transform(xs[chosen], ys[chosen])
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ClayInputError("chip bounds do not transform to lon/lat (wrong EPSG code for the chip bounds?)")
    return np.stack([lon, lat], axis=-1)


def rings_to_wkb(rings: np.ndarray) -> list[bytes]:
    """WKB polygons (little endian, one ring) from rings [N, K, 2] (clay_core.wkb.polygons_from_rings)."""
    return wkb.polygons_from_rings(rings)


def wkb_polygon_rings(geometry: bytes) -> np.ndarray:
    """The exterior ring [K, 2] of a WKB polygon (see clay_core.wkb: Z/M and MultiPolygons too)."""
    return wkb.exterior_ring(geometry)


def crs84_projjson() -> dict[str, Any]:
    from pyproj import CRS

    return CRS("OGC:CRS84").to_json_dict()


# ----------------------------------------------------------------------------------------------
# Building tables
# ----------------------------------------------------------------------------------------------


def _per_row(value: Any, n: int, name: str) -> list[Any]:
    """Broadcast a single value, or check a per-row sequence has n items."""
    if value is None or isinstance(value, (str, bytes, int, float)):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name}: {len(values)} values for {n} rows")
    return values


def _filled_per_row(filled_bands: Sequence[str] | Sequence[Sequence[str]] | None, n: int) -> list[list[str]]:
    if not filled_bands:
        return [[] for _ in range(n)]
    if all(isinstance(item, str) for item in filled_bands):
        shared = [str(item) for item in filled_bands]  # one list of band names for every row
        return [list(shared) for _ in range(n)]
    rows = [list(item) for item in filled_bands]
    if len(rows) != n:
        raise ValueError(f"filled_bands: {len(rows)} lists for {n} rows")
    return rows


def embeddings_array(flat: np.ndarray) -> pa.FixedSizeListArray:
    flat = np.ascontiguousarray(flat, dtype=np.float32)
    width = int(flat.shape[1])
    values = pa.array(flat.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, width)


def chips_schema(embedding_width: int, exploded: bool = False, satclip_width: int | None = None) -> pa.Schema:
    """The column layout of every file we write (parts and final outputs alike)."""
    fields = [
        pa.field("source_url", pa.string()),
        pa.field("date", pa.date32()),
        pa.field(EMBEDDINGS, pa.list_(pa.float32(), embedding_width)),
        pa.field(GEOMETRY, pa.binary()),
        pa.field("chip_id", pa.string()),
        pa.field("mgrs", pa.string()),
        pa.field("epsg", pa.int32()),
        pa.field("utm_bbox", pa.list_(pa.float64(), 4)),
        pa.field("row", pa.int32()),
        pa.field("col", pa.int32()),
        pa.field("nodata_fraction", pa.float32()),
        pa.field("filled_bands", pa.list_(pa.string())),
        pa.field(BBOX, pa.struct([pa.field(name, pa.float64()) for name in BBOX_FIELDS])),
    ]
    if exploded:
        fields += [pa.field("patch_row", pa.int32()), pa.field("patch_col", pa.int32())]
    if satclip_width:
        fields.append(pa.field(SATCLIP, pa.list_(pa.float64(), int(satclip_width))))
    return pa.schema(fields)


def _patch_grid(embeddings: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Per-patch vectors [N, h, w, ...] (clay_core.patches layout) with a message for the CLI option."""
    if embeddings.ndim not in (4, 5):
        raise ClayInputError(
            f"--explode-patches needs patch or group embeddings (N, h, w, d) / (N, g, h, w, d); got shape "
            f"{tuple(embeddings.shape)}: use --level patch"
        )
    patches = per_patch(embeddings)
    return patches, patches.shape[1], patches.shape[2]


def chips_table(
    records: Sequence[ChipLike],
    embeddings: np.ndarray,
    *,
    nodata_fractions: Sequence[float] | float | None = None,
    filled_bands: Sequence[str] | Sequence[Sequence[str]] | None = None,
    explode_patches: bool = False,
    satclip: np.ndarray | None = None,
) -> pa.Table:
    """An Arrow table (no file metadata yet) with one row per chip, or per patch when exploded.

    `satclip` [N, K]: the SatCLIP embedding of each chip's centre (patch rows repeat their chip's)."""
    embeddings = np.asarray(embeddings)
    n = len(records)
    if embeddings.shape[0] != n:
        raise ValueError(f"{embeddings.shape[0]} embeddings for {n} chips")
    nodata = np.asarray(
        _per_row(nodata_fractions if nodata_fractions is not None else 0.0, n, "nodata"), dtype=np.float32
    )
    filled = _filled_per_row(filled_bands, n)
    bounds = np.array([tuple(float(v) for v in r.utm_bounds) for r in records], dtype=np.float64).reshape(n, 4)
    epsg = np.array([int(r.epsg) for r in records], dtype=np.int32)
    repeat = 1
    patch_rows = patch_cols = None
    if explode_patches:
        patches, h, w = _patch_grid(embeddings)
        repeat = h * w
        flat = patches.reshape(n * repeat, int(np.prod(patches.shape[3:])))
        bounds = np.concatenate([patch_bounds(b, h, w).reshape(-1, 4) for b in bounds]) if n else bounds
        grid_rows, grid_cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        patch_rows = np.tile(grid_rows.reshape(-1), n).astype(np.int32)
        patch_cols = np.tile(grid_cols.reshape(-1), n).astype(np.int32)
    else:
        flat = embeddings.reshape(n, int(np.prod(embeddings.shape[1:])))
    epsg_rows = np.repeat(epsg, repeat)
    rings = utm_boxes_to_crs84(bounds, epsg_rows) if len(bounds) else np.zeros((0, 5, 2))

    def rep(values: list[Any]) -> list[Any]:
        return [v for v in values for _ in range(repeat)]

    columns: dict[str, pa.Array] = {
        "source_url": pa.array(rep(_public_sources(records)), pa.string()),
        "date": pa.array(rep([r.date for r in records]), pa.date32()),
        EMBEDDINGS: embeddings_array(flat),
        GEOMETRY: pa.array(rings_to_wkb(rings), pa.binary()),
        "chip_id": pa.array(rep([str(r.chip_id) for r in records]), pa.string()),
        "mgrs": pa.array(rep([r.mgrs for r in records]), pa.string()),
        "epsg": pa.array(epsg_rows, pa.int32()),
        "utm_bbox": pa.FixedSizeListArray.from_arrays(pa.array(bounds.reshape(-1), pa.float64()), 4),
        "row": pa.array(rep([int(r.row) for r in records]), pa.int32()),
        "col": pa.array(rep([int(r.col) for r in records]), pa.int32()),
        "nodata_fraction": pa.array(np.repeat(nodata, repeat), pa.float32()),
        "filled_bands": pa.array(rep(filled), pa.list_(pa.string())),
        BBOX: bbox_array(rings),
    }
    if explode_patches:
        columns["patch_row"] = pa.array(patch_rows, pa.int32())
        columns["patch_col"] = pa.array(patch_cols, pa.int32())
    satclip_width = None
    if satclip is not None:
        location = np.ascontiguousarray(satclip, dtype=np.float64)
        if location.ndim != 2 or location.shape[0] != n:
            raise ValueError(f"satclip: shape {location.shape} for {n} chips")
        satclip_width = int(location.shape[1])
        columns[SATCLIP] = pa.FixedSizeListArray.from_arrays(
            pa.array(np.repeat(location, repeat, axis=0).reshape(-1), pa.float64()), satclip_width
        )
    schema = chips_schema(int(flat.shape[1]), exploded=explode_patches, satclip_width=satclip_width)
    return pa.Table.from_arrays(list(columns.values()), schema=schema)


# ----------------------------------------------------------------------------------------------
# File metadata
# ----------------------------------------------------------------------------------------------


def bbox_array(rings: np.ndarray) -> pa.StructArray:
    """Per-row CRS84 extent (the GeoParquet 1.1 bbox covering column) of rings or points [N, K, 2]."""
    lon, lat = rings[..., 0], rings[..., 1]
    extents = [lon.min(axis=1), lat.min(axis=1), lon.max(axis=1), lat.max(axis=1)] if len(rings) else [[]] * 4
    return pa.StructArray.from_arrays([pa.array(v, pa.float64()) for v in extents], names=list(BBOX_FIELDS))


def bbox_of_table(table: pa.Table) -> list[float] | None:
    """[minx, miny, maxx, maxy] of a table from its bbox column."""
    if table.num_rows == 0:
        return None
    column = table.column(BBOX).combine_chunks()
    mins = [pc.min(column.field(name)).as_py() for name in BBOX_FIELDS[:2]]
    maxs = [pc.max(column.field(name)).as_py() for name in BBOX_FIELDS[2:]]
    return [float(v) for v in (*mins, *maxs)]


def bbox_of_wkb(wkb_values: Iterable[bytes]) -> list[float] | None:
    """[minx, miny, maxx, maxy] over WKB points, polygons or multipolygons."""
    return wkb.bounds(wkb_values)


def union_bbox(boxes: Iterable[Sequence[float] | None]) -> list[float] | None:
    present = [b for b in boxes if b]
    if not present:
        return None
    array = np.array(present, dtype=np.float64)
    return [float(array[:, 0].min()), float(array[:, 1].min()), float(array[:, 2].max()), float(array[:, 3].max())]


def geo_metadata(
    bbox: Sequence[float] | None, *, geometry_type: str = "Polygon", covering: bool = True
) -> dict[str, Any]:
    """GeoParquet 1.1.0 `geo` metadata for our single geometry column in OGC:CRS84.

    `covering`: declare the `bbox` struct column (only when the table has it: chip files do, point files
    do not); `orientation` is written for polygons only (it means nothing for points)."""
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": [geometry_type],
        "crs": crs84_projjson(),
        "edges": "planar",
    }
    if geometry_type in ("Polygon", "MultiPolygon"):
        column["orientation"] = "counterclockwise"
    if covering:
        column["covering"] = {BBOX: {name: [BBOX, name] for name in BBOX_FIELDS}}
    if bbox:
        column["bbox"] = [float(v) for v in bbox]
    return {"version": GEOPARQUET_VERSION, "primary_column": GEOMETRY, "columns": {GEOMETRY: column}}


def file_metadata(
    table_or_schema: pa.Table | pa.Schema,
    clay: Mapping[str, Any],
    bbox: Sequence[float] | None,
    *,
    explode_patches: bool = False,
    embedding_shape: Sequence[int] | None = None,
    geometry_type: str = "Polygon",
) -> dict[bytes, bytes]:
    """Schema metadata for a final file: `geo` plus the `clay` JSON (with the per-row shape readers need).
    The bbox covering is declared exactly when the schema has the `bbox` column."""
    import clay_core

    schema = table_or_schema.schema if isinstance(table_or_schema, pa.Table) else table_or_schema
    width = schema.field(EMBEDDINGS).type.list_size
    clay_meta = dict(clay)
    clay_meta.setdefault("clay_core_version", clay_core.__version__)
    clay_meta["exploded_patches"] = bool(explode_patches)
    row_shape = _row_shape(clay_meta, width, explode_patches, embedding_shape)
    clay_meta["row_shape"] = list(row_shape)
    clay_meta["embedding_order"] = _order_name(row_shape, explode_patches)
    geo = geo_metadata(bbox, geometry_type=geometry_type, covering=BBOX in schema.names)
    return {GEO_KEY: json.dumps(geo).encode(), CLAY_KEY: json.dumps(clay_meta, default=str).encode()}


def _row_shape(clay: Mapping[str, Any], width: int, exploded: bool, shape: Sequence[int] | None) -> tuple[int, ...]:
    """Shape of one row's embedding: the model's per-chip shape, or per patch when exploded."""
    chip_shape = tuple(int(v) for v in (shape or clay.get("embedding_shape") or (width,)))
    if exploded and len(chip_shape) in (3, 4):
        chip_shape = exploded_row_shape(chip_shape)
    if int(np.prod(chip_shape)) != width:
        raise ValueError(f"embedding shape {chip_shape} does not match the row width {width}")
    return chip_shape


def _order_name(row_shape: Sequence[int], exploded: bool) -> str:
    if exploded:
        return "(g, d) per patch" if len(row_shape) == 2 else "(d) per patch"
    return {1: "(d)", 3: "(h, w, d)", 4: "(g, h, w, d)"}.get(len(row_shape), "flat")


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def check_writable(path: Path, overwrite: bool) -> None:
    """The checks of clay_core.validate.output_file (a folder that exists and is writable, not a folder itself,
    not there yet without overwrite), without its suffix rule: library callers choose their names."""
    from clay_core.validate import output_file

    output_file(path, overwrite, option="output", suffixes=())


def rows_per_group(schema: pa.Schema) -> int:
    width = schema.field(EMBEDDINGS).type.list_size
    return max(1, ROW_GROUP_BYTES // max(1, 4 * width))


def write_table_atomic(path: str | Path, table: pa.Table, *, overwrite: bool = False) -> Path:
    """Write a finished table (with its schema metadata) as ZSTD Parquet via temp file + rename."""
    path = Path(path)
    check_writable(path, overwrite)
    with atomic_output(path, overwrite=overwrite) as temporary:
        pq.write_table(table, temporary, compression="zstd", row_group_size=rows_per_group(table.schema))
    return path


def write_geoparquet(
    path: str | Path,
    records: Sequence[ChipLike],
    embeddings: np.ndarray,
    metadata: Mapping[str, Any],
    *,
    nodata_fractions: Sequence[float] | float | None = None,
    filled_bands: Sequence[str] | Sequence[Sequence[str]] | None = None,
    explode_patches: bool = False,
    overwrite: bool = False,
    satclip: np.ndarray | None = None,
) -> Path:
    """Write chips and their embeddings [N, ...] as one GeoParquet file (see the module docstring).

    `metadata` becomes the `clay` key (typically `model.metadata(level)` plus run details);
    `filled_bands` is one list for all rows or one list per row."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    table = chips_table(
        records,
        embeddings,
        nodata_fractions=nodata_fractions,
        filled_bands=filled_bands,
        explode_patches=explode_patches,
        satclip=satclip,
    )
    chip_shape = tuple(embeddings.shape[1:]) or None
    meta = file_metadata(
        table, metadata, bbox_of_table(table), explode_patches=explode_patches, embedding_shape=chip_shape
    )
    return write_table_atomic(path, table.replace_schema_metadata(meta), overwrite=overwrite)


def output_name(mgrs: str, min_date: Any, max_date: Any, version: int = 1) -> str:
    """Clay's file naming: {MGRS}_{MINDATE:%Y%m%d}_{MAXDATE:%Y%m%d}_v{VERSION:03d}.gpq"""
    return f"{mgrs}_{min_date:%Y%m%d}_{max_date:%Y%m%d}_v{int(version):03d}.gpq"


def _public_sources(records: Sequence[ChipLike]) -> list[str]:
    """Each chip's source as the file may show it (absolute path, URL without credentials), worked out once per
    distinct source."""
    public = {source: public_source(source) for source in dict.fromkeys(str(r.source_url) for r in records)}
    return [public[str(r.source_url)] for r in records]
