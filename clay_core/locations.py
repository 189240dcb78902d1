"""Points for location encoders: read them (GeoJSON/GPKG/any OGR vector, CSV lon/lat), make lon/lat
grids, and write point embeddings as GeoParquet.

The point file follows the chip files' rules (parquet.py): `embeddings` float32 fixed-size list,
`geometry` WKB in OGC:CRS84 with GeoParquet `geo` metadata, the `clay` JSON key, ZSTD, temp + rename.
Differences: the geometry is a Point (declared as such, with no polygon orientation; the `bbox` covering
column holds the point itself, so readers can still skip row groups by extent) and there is no
`source_url`/`date`. `chip_id` holds the
point id, so tools that pick a row by chip id (`clay similar --chip`) work on points too.

Also here: the SatCLIP model check and the `satclip` column of chip files (SatCLIP of each chip's centre),
which the embedding pipeline adds when asked (`clay embed --satclip`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from clay_core.errors import ClayInputError
from clay_core.parquet import (
    BBOX,
    EMBEDDINGS,
    GEOMETRY,
    bbox_array,
    embeddings_array,
    file_metadata,
    write_table_atomic,
)

if TYPE_CHECKING:
    from clay_core.models.satclip import SatCLIPLocationModel
    from clay_core.sources.base import ChipRecord

MAX_GRID_POINTS = 10_000_000
LON_NAMES = ("lon", "longitude", "lng", "long", "x")
LAT_NAMES = ("lat", "latitude", "y")
ID_COLUMN = "chip_id"
RESERVED = (ID_COLUMN, "lon", "lat", EMBEDDINGS, GEOMETRY, BBOX)


@dataclass
class PointSet:
    lonlat: np.ndarray  # [N, 2] float64 degrees (lon, lat)
    ids: list[str]
    attributes: pa.Table  # the input's own columns (may have 0 columns), one row per point


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


def _pick_column(names: Sequence[str], wanted: str | None, candidates: Sequence[str], role: str) -> str:
    lowered = {name.lower(): name for name in names}
    if wanted:
        if wanted in names:
            return wanted
        if wanted.lower() in lowered:
            return lowered[wanted.lower()]
        raise ClayInputError(f"no {role} column {wanted!r}; columns are: {', '.join(names)}")
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    raise ClayInputError(
        f"cannot find a {role} column (tried {', '.join(candidates)}); columns are: "
        f"{', '.join(names)}; pass --{role}-column NAME"
    )


def _ids(table: pa.Table, id_field: str | None, n: int) -> list[str]:
    if not id_field:
        return [str(i) for i in range(n)]
    if id_field not in table.column_names:
        raise ClayInputError(f"no id field {id_field!r}; fields are: {', '.join(table.column_names)}")
    values = table.column(id_field).to_pylist()
    ids = [str(v) for v in values]
    if any(v is None for v in values) or len(set(ids)) != len(ids):
        raise ClayInputError(f"id field {id_field!r} has empty or repeated values; ids must be unique")
    return ids


def read_csv_points(
    path: Path, lon_column: str | None = None, lat_column: str | None = None, id_field: str | None = None
) -> PointSet:
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ClayInputError(f"{path} is not a readable CSV file: {exc}") from exc
    lon_name = _pick_column(table.column_names, lon_column, LON_NAMES, "lon")
    lat_name = _pick_column(table.column_names, lat_column, LAT_NAMES, "lat")
    try:
        lon = np.asarray(table.column(lon_name).to_numpy(zero_copy_only=False), dtype=np.float64)
        lat = np.asarray(table.column(lat_name).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ClayInputError(f"{path}: columns {lon_name!r}/{lat_name!r} must be numbers (degrees)") from exc
    attributes = table.drop_columns([lon_name, lat_name])
    return PointSet(np.stack([lon, lat], axis=1), _ids(table, id_field, table.num_rows), attributes)


def _arrow_attributes(frame: Any) -> pa.Table:
    """Attribute columns as Arrow; columns Arrow cannot type (mixed objects) become strings."""
    columns = {}
    for name in frame.columns:
        try:
            columns[str(name)] = pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[str(name)] = pa.array(frame[name].astype(str), from_pandas=True)
    return pa.table(columns) if columns else pa.table({"__empty": pa.nulls(len(frame))}).drop_columns(["__empty"])


def read_vector_points(path: Path, layer: str | None = None, id_field: str | None = None) -> PointSet:
    import pyogrio

    try:
        frame = pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # noqa: BLE001 - pyogrio raises several unrelated types for unreadable files
        raise ClayInputError(f"{path} is not a readable vector file: {str(exc).splitlines()[0]}") from exc
    if frame.geometry.isna().any() or frame.geometry.is_empty.any():
        raise ClayInputError(f"{path} has features without geometry; remove them first")
    kinds = set(frame.geometry.geom_type)
    if not kinds <= {"Point"}:
        raise ClayInputError(
            f"{path} has {', '.join(sorted(kinds))} geometries; embed-locations needs points "
            "(convert polygons to centroids first)"
        )
    if frame.crs is None:
        raise ClayInputError(f"{path} has no CRS; set one (e.g. EPSG:4326) before embedding its points")
    frame = frame.to_crs("OGC:CRS84") if not frame.crs.equals("OGC:CRS84") else frame
    lonlat = np.stack([frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy()], axis=1).astype(np.float64)
    attributes = _arrow_attributes(frame.drop(columns=frame.geometry.name))
    return PointSet(lonlat, _ids(attributes, id_field, len(frame)), attributes)


def read_points(
    path: str | Path,
    *,
    lon_column: str | None = None,
    lat_column: str | None = None,
    layer: str | None = None,
    id_field: str | None = None,
) -> PointSet:
    """Points from a CSV (lon/lat columns, degrees) or any OGR vector file (reprojected to lon/lat)."""
    path = Path(path)
    if not path.exists():
        raise ClayInputError(f"points file {path} does not exist")
    if path.suffix.lower() in {".csv", ".txt", ".tsv"}:
        points = read_csv_points(path, lon_column, lat_column, id_field)
    else:
        points = read_vector_points(path, layer, id_field)
    if len(points.lonlat) == 0:
        raise ClayInputError(f"{path} holds no points")
    return points


def grid_points(bbox: Sequence[float], spacing_deg: float) -> PointSet:
    """Cell centres of a regular lon/lat grid over bbox (W, S, E, N) with `spacing_deg` cells, row 0 north."""
    west, south, east, north = (float(v) for v in bbox)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ClayInputError(f"bbox {list(bbox)} must be W,S,E,N in degrees with W<E, S<N inside -180..180/-90..90")
    if not spacing_deg or spacing_deg <= 0 or not math.isfinite(spacing_deg):
        raise ClayInputError(f"grid spacing must be a positive number of degrees, got {spacing_deg}")
    cols = max(1, math.floor((east - west) / spacing_deg + 1e-9))
    rows = max(1, math.floor((north - south) / spacing_deg + 1e-9))
    if rows * cols > MAX_GRID_POINTS:
        raise ClayInputError(
            f"a {spacing_deg} degree grid over that bbox has {rows * cols:,} points "
            f"(limit {MAX_GRID_POINTS:,}); use a larger spacing or a smaller bbox"
        )
    # Centre the grid in the bbox when the extent is not a multiple of the spacing.
    lon = west + (east - west - cols * spacing_deg) / 2 + (np.arange(cols) + 0.5) * spacing_deg
    lat = north - (north - south - rows * spacing_deg) / 2 - (np.arange(rows) + 0.5) * spacing_deg
    grid_lat, grid_lon = np.meshgrid(lat, lon, indexing="ij")
    row_index, col_index = np.meshgrid(np.arange(len(lat)), np.arange(len(lon)), indexing="ij")
    ids = [f"r{r}_c{c}" for r, c in zip(row_index.ravel(), col_index.ravel(), strict=True)]
    attributes = pa.table(
        {"row": pa.array(row_index.ravel(), pa.int32()), "col": pa.array(col_index.ravel(), pa.int32())}
    )
    return PointSet(np.stack([grid_lon.ravel(), grid_lat.ravel()], axis=1), ids, attributes)


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def points_to_wkb(lonlat: np.ndarray) -> list[bytes]:
    """WKB Points (little endian, 2D) without shapely."""
    header = np.uint8(1).tobytes() + np.uint32(1).astype("<u4").tobytes()
    coords = np.ascontiguousarray(lonlat, dtype="<f8")
    return [header + row.tobytes() for row in coords]


def points_table(points: PointSet, embeddings: np.ndarray) -> pa.Table:
    n = len(points.lonlat)
    flat = np.asarray(embeddings, dtype=np.float32).reshape(n, -1)
    columns: dict[str, pa.Array] = {
        ID_COLUMN: pa.array(points.ids, pa.string()),
        "lon": pa.array(points.lonlat[:, 0], pa.float64()),
        "lat": pa.array(points.lonlat[:, 1], pa.float64()),
    }
    for name in points.attributes.column_names:
        # The input's own fields travel along; a clash with ours gets a suffix instead of overwriting.
        target = name if name not in RESERVED else f"{name}_input"
        columns[target] = points.attributes.column(name)
    columns[EMBEDDINGS] = embeddings_array(flat)
    columns[GEOMETRY] = pa.array(points_to_wkb(points.lonlat), pa.binary())
    columns[BBOX] = bbox_array(np.asarray(points.lonlat, dtype=np.float64)[:, None, :])
    return pa.table(columns)


def write_point_embeddings(
    path: str | Path, points: PointSet, embeddings: np.ndarray, metadata: Mapping[str, Any], *, overwrite: bool = False
) -> Path:
    """One row per point: chip_id (point id), lon, lat, the input's fields, embeddings, geometry (Point)."""
    table = points_table(points, embeddings)
    bbox = [
        float(points.lonlat[:, 0].min()),
        float(points.lonlat[:, 1].min()),
        float(points.lonlat[:, 0].max()),
        float(points.lonlat[:, 1].max()),
    ]
    meta = file_metadata(
        table,
        {**metadata, "geometry": "point"},
        bbox,
        geometry_type="Point",
        embedding_shape=(table.schema.field(EMBEDDINGS).type.list_size,),
    )
    return write_table_atomic(path, table.replace_schema_metadata(meta), overwrite=overwrite)


# ------------------------------------------------------------------------------------------------
# The SatCLIP column of chip files (`clay embed --satclip`) and its model
# ------------------------------------------------------------------------------------------------


def load_satclip(checkpoint_or_preset: str, device: str = "cpu") -> SatCLIPLocationModel:
    """A SatCLIP location encoder, or a ClayInputError when the checkpoint is another model (the --satclip
    column and `clay embed-locations` both use it). The column runs on the CPU by default: one batch of chip
    centres costs little next to the image model, and float64 is what its parity is defined in. Loaded once
    per process, device and file version (models.satclip.load_satclip_model), so the CLI checks it before
    the image model loads and the job reuses it."""
    from clay_core.models.satclip import load_satclip_model

    return load_satclip_model(checkpoint_or_preset, device)


def satclip_vectors(satclip: SatCLIPLocationModel, records: Sequence[ChipRecord]) -> np.ndarray:
    """float64 [B, 256]: SatCLIP of each chip's centre (lon, lat degrees); NaN for a chip without a location."""
    from clay_core.models.satclip import satclip_embed_lonlat

    lonlat = np.array([r.center_lonlat for r in records], dtype=np.float64).reshape(-1, 2)
    located = np.isfinite(lonlat).all(axis=1)
    if located.all():
        return satclip_embed_lonlat(lonlat, satclip)
    vectors = np.full((len(lonlat), _width(satclip)), np.nan)
    vectors[located] = satclip_embed_lonlat(lonlat[located], satclip)
    return vectors


def satclip_width(satclip: SatCLIPLocationModel | None) -> int | None:
    return _width(satclip) if satclip is not None else None


def _width(satclip: SatCLIPLocationModel) -> int:
    return int(satclip.embedding_shape(satclip.default_level)[0])


def satclip_metadata(satclip: SatCLIPLocationModel) -> dict[str, Any]:
    meta = satclip.metadata(satclip.default_level)
    return {
        "column": "satclip",
        "input": "chip centre (lon, lat) in degrees, WGS84; patch rows repeat their chip's",
        "dtype": "float64",
        "model": satclip.name,
        "family": satclip.family,
        "checkpoint": meta.get("checkpoint"),
        "checkpoint_sha256": satclip.checkpoint_sha256,
        "weights_sha256": _weights_fingerprint(satclip),
        "legendre_polys": satclip.config.legendre_polys,
        "harmonics": satclip.config.harmonics,
        "embedding_shape": list(satclip.embedding_shape(satclip.default_level)),
        "normalised": False,
    }


def _weights_fingerprint(model: SatCLIPLocationModel) -> str:
    from clay_core.embed import weights_fingerprint  # the pipeline imports this module

    return weights_fingerprint(model)
