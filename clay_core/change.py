"""Change between dates: two embedding files of one area -> the cosine distance of each chip (or patch) to the
same footprint at the other date.

Rows are matched by footprint, never by row order (two runs may chip in another order, skip nodata chips or
cover a different extent): the key is the native footprint (`epsg` + `utm_bbox`, to the centimetre) when both
files have it, else the CRS84 polygon's bounds (to 1e-7 degrees, ~1 cm); exploded patch files add
`patch_row`/`patch_col`. For patch-level files (one (h, w, d) vector per chip), `per_patch_distance` gives the
distance of every patch. Distances are 1 - cos in [0, 2]; 0 = unchanged.

`compare(before, after, patches)` does all of it for two files read as collections (clay_core.collection) and
returns a `ChangeResult` (the output table, most changed first); `write_change` writes it as GeoParquet. The
matching and distance functions need numpy only (the QGIS algorithm calls them in QGIS's own Python);
pyarrow is imported by the functions that build tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clay_core.errors import ClayInputError
from clay_core.similarity import BLOCK_ROWS, exterior_rings, inverse_norms, ring_bounds

if TYPE_CHECKING:
    import pyarrow as pa

    from clay_core.collection import EmbeddingCollection

_UTM_DIGITS = 2  # centimetres
_DEGREE_DIGITS = 7


@dataclass
class Matched:
    """Rows of A and B that share a footprint (same order), and how many rows of each had no partner."""

    rows_a: np.ndarray  # int64
    rows_b: np.ndarray  # int64
    only_in_a: int
    only_in_b: int
    key: str  # what matched them: "utm_bbox" or "geometry"


def footprint_keys(
    utm_bbox: np.ndarray | None, epsg: np.ndarray | None, bounds: np.ndarray | None, patch: np.ndarray | None = None
) -> tuple[list[tuple], str]:
    """One hashable key per row: (epsg, rounded utm_bbox) when given, else the rounded CRS84 bounds."""
    if utm_bbox is not None and epsg is not None:
        numbers = np.column_stack(
            [np.asarray(epsg, dtype=np.float64), np.round(np.asarray(utm_bbox, dtype=np.float64), _UTM_DIGITS)]
        )
        kind = "utm_bbox"
    elif bounds is not None:
        numbers = np.round(np.asarray(bounds, dtype=np.float64), _DEGREE_DIGITS)
        kind = "geometry"
    else:
        raise ClayInputError(
            "the files have neither utm_bbox/epsg columns nor polygon geometry: chips cannot be matched by footprint"
        )
    if patch is not None:
        numbers = np.column_stack([numbers, np.asarray(patch, dtype=np.float64)])
    return [tuple(row) for row in numbers.tolist()], kind


def match_footprints(keys_a: Sequence[tuple], keys_b: Sequence[tuple], kind: str = "utm_bbox") -> Matched:
    """Pair the rows with equal keys (A's order); a key twice in one file is refused (it would be ambiguous)."""
    by_key: dict[tuple, int] = {}
    for row, key in enumerate(keys_b):
        if by_key.setdefault(key, row) != row:
            raise ClayInputError(
                f"two rows of the second file share one footprint ({kind} {key}): give one file "
                "per date, not overlapping runs"
            )
    rows_a, rows_b, seen = [], [], set()
    for row, key in enumerate(keys_a):
        if key in seen:
            raise ClayInputError(
                f"two rows of the first file share one footprint ({kind} {key}): give one file "
                "per date, not overlapping runs"
            )
        seen.add(key)
        partner = by_key.get(key)
        if partner is not None:
            rows_a.append(row)
            rows_b.append(partner)
    if not rows_a:
        raise ClayInputError(
            "no chip of the first file has the same footprint as a chip of the second: the files "
            "cover different places or were chipped on different grids (same chip size, stride "
            "and grid are needed)"
        )
    return Matched(
        rows_a=np.asarray(rows_a, dtype=np.int64),
        rows_b=np.asarray(rows_b, dtype=np.int64),
        only_in_a=len(keys_a) - len(rows_a),
        only_in_b=len(keys_b) - len(rows_b),
        key=kind,
    )


def cosine_distance(vectors_a: np.ndarray, vectors_b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """1 - cos(a_i, b_i) for the matched rows, float32 in [0, 2]; a pair with an all-zero row gets NaN."""
    if vectors_a.shape[1] != vectors_b.shape[1]:
        raise ClayInputError(
            f"the files have {vectors_a.shape[1]} and {vectors_b.shape[1]} values per row: embed "
            "both dates with the same model and level"
        )
    out = np.empty(len(rows_a), dtype=np.float32)
    for start in range(0, len(rows_a), BLOCK_ROWS):
        a = np.asarray(vectors_a[rows_a[start : start + BLOCK_ROWS]], dtype=np.float32)
        b = np.asarray(vectors_b[rows_b[start : start + BLOCK_ROWS]], dtype=np.float32)
        inverse_a, inverse_b = inverse_norms(a), inverse_norms(b)  # once per block: each is a pass over it
        cosine = np.einsum("ij,ij->i", a, b, dtype=np.float64) * inverse_a * inverse_b
        part = 1.0 - np.clip(cosine, -1.0, 1.0)
        part[(inverse_a == 0) | (inverse_b == 0)] = np.nan
        out[start : start + len(a)] = part
    return out


def per_patch_distance(
    vectors_a: np.ndarray, vectors_b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray, shape_per_row: Sequence[int]
) -> np.ndarray:
    """[pairs, h, w] distances of patch-level rows ((h, w, d) or (g, h, w, d) per chip; groups are averaged
    first, as the patch view does), float32."""
    from clay_core.patches import explode_patch_vectors, patch_grid_shape

    h, w = patch_grid_shape(tuple(shape_per_row))
    patches_a = explode_patch_vectors(np.asarray(vectors_a)[rows_a], tuple(shape_per_row))
    patches_b = explode_patch_vectors(np.asarray(vectors_b)[rows_b], tuple(shape_per_row))
    every = np.arange(len(patches_a))
    return cosine_distance(patches_a, patches_b, every, every).reshape(len(rows_a), h, w)


def most_changed_first(distance: np.ndarray) -> np.ndarray:
    """Row order by falling distance; NaN (an all-zero row) last, ties in their input order."""
    return np.argsort(-np.nan_to_num(np.asarray(distance, dtype=np.float64), nan=-1.0), kind="stable")


# ------------------------------------------------------------------------------------------------
# Two embeddings files -> one change table (`clay change`)
# ------------------------------------------------------------------------------------------------

# Columns of the earlier file that travel to the output (where it has them), then the two dates.
_CARRIED = ("chip_id", "row", "col", "epsg", "utm_bbox", "patch_row", "patch_col")


@dataclass
class ChangeResult:
    """The change table (one row per matched chip or patch, most changed first) and how it was matched."""

    table: pa.Table  # carried columns, date_before/date_after, `change` float32, geometry (WKB, CRS84)
    matched: Matched
    geo: dict[str, Any]  # the earlier file's `geo` metadata (its bbox is reset to the rows written)

    @property
    def change(self) -> np.ndarray:
        return np.asarray(self.table.column("change").to_numpy(zero_copy_only=False), dtype=np.float32)

    def summary(self, shown: int = 10) -> dict[str, Any]:
        """Counts, median and max change and the `shown` most changed chips (what `clay change` reports)."""
        values = self.change
        finite = values[np.isfinite(values)]
        chip_ids = self.table.column("chip_id").to_pylist()[:shown] if "chip_id" in self.table.column_names else []
        patches: list[dict[str, list[int]]] = [{} for _ in chip_ids]
        if {"patch_row", "patch_col"} <= set(self.table.column_names):  # per patch: which patch of the chip
            rows, cols = (self.table.column(name).to_pylist()[:shown] for name in ("patch_row", "patch_col"))
            patches = [{"patch": [row, col]} for row, col in zip(rows, cols, strict=True)]
        return {
            "rows": self.table.num_rows,
            "matched_chips": len(self.matched.rows_a),
            "only_in_before": self.matched.only_in_a,
            "only_in_after": self.matched.only_in_b,
            "matched_by": self.matched.key,
            "change_median": round(float(np.median(finite)), 6) if finite.size else None,
            "change_max": round(float(finite.max()), 6) if finite.size else None,
            "most_changed": [
                {"chip_id": chip, "change": round(float(value), 6), **patch}
                for chip, value, patch in zip(chip_ids, values[:shown], patches, strict=False)
            ],
        }


def collection_footprints(collection: EmbeddingCollection, patch_keys: bool = False) -> tuple[list[tuple], str]:
    """`footprint_keys` of every row of a collection: epsg + utm_bbox when every row has them, else the
    polygon bounds; with `patch_keys`, exploded files' patch_row/patch_col too."""
    table = collection.table
    names = set(table.column_names)
    utm = epsg = bounds = patch = None
    if {"utm_bbox", "epsg"} <= names and table.column("utm_bbox").null_count == 0:
        utm = np.asarray(table.column("utm_bbox").to_pylist(), dtype=np.float64)
        epsg = table.column("epsg").to_numpy(zero_copy_only=False)
    elif collection.geometry_wkb:
        # one vectorised pass (empty geometries get NaN bounds and so match nothing)
        bounds = ring_bounds(exterior_rings(collection.geometry_wkb))
    if patch_keys and {"patch_row", "patch_col"} <= names:
        patch = np.column_stack([table.column("patch_row").to_numpy(), table.column("patch_col").to_numpy()])
    return footprint_keys(utm, epsg, bounds, patch)


def compare(before: EmbeddingCollection, after: EmbeddingCollection, patches: bool = False) -> ChangeResult:
    """Match the rows of two files by footprint and measure each pair's change; with `patches` (patch- or
    group-level chip files) one row per patch. Files of exploded patches are matched patch by patch."""
    import pyarrow as pa

    exploded = "patch_row" in before.table.column_names
    keys_before, kind = collection_footprints(before, exploded)
    keys_after, kind_after = collection_footprints(after, exploded)
    if kind != kind_after:
        raise ClayInputError(
            f"{_name(before)} is matched by {kind} and {_name(after)} by {kind_after}: write both with the same tool"
        )
    matched = match_footprints(keys_before, keys_after, kind)
    if before.dim != after.dim:
        raise ClayInputError(
            f"the files have {before.dim} and {after.dim} values per row: embed both dates with "
            "the same model and level"
        )
    if patches and not exploded:
        distance = per_patch_distance(
            before.vectors, after.vectors, matched.rows_a, matched.rows_b, before.shape_per_row
        )
        table = _patch_table(before, after, matched, distance)
    else:
        distance = cosine_distance(before.vectors, after.vectors, matched.rows_a, matched.rows_b)
        table = _chip_table(before, after, matched, distance)
    order = most_changed_first(table.column("change").to_numpy(zero_copy_only=False))
    return ChangeResult(table.take(pa.array(order, pa.int64())), matched, before.geo)


def write_change(path: str | Path, result: ChangeResult, overwrite: bool = False) -> Path:
    """The change table as GeoParquet (ZSTD, the input's `geo` metadata with this table's bbox; temp file +
    rename, an existing file kept unless `overwrite`)."""
    import pyarrow.parquet as pq

    from clay_core.atomic import atomic_output
    from clay_core.collection import output_geo
    from clay_core.parquet import GEO_KEY, GEOMETRY, check_writable

    path = Path(path)
    check_writable(path, overwrite)
    metadata = {}
    if result.geo:
        geo = output_geo(result.geo, result.table.column(GEOMETRY).to_pylist())
        for column in geo.get("columns", {}).values():
            column.pop("covering", None)  # no bbox struct column in this output
        metadata[GEO_KEY] = json.dumps(geo).encode()
    with atomic_output(path, overwrite=overwrite) as temporary:
        pq.write_table(result.table.replace_schema_metadata(metadata), temporary, compression="zstd")
    return path


def _name(collection: EmbeddingCollection) -> str:
    return ", ".join(path.name for path in collection.files)


def _base_columns(before: EmbeddingCollection, after: EmbeddingCollection, matched: Matched) -> dict[str, Any]:
    import pyarrow as pa

    rows_a = pa.array(matched.rows_a, pa.int64())
    rows_b = pa.array(matched.rows_b, pa.int64())
    columns: dict[str, Any] = {}
    for name in _CARRIED:
        if name in before.table.column_names:
            columns[name] = before.table.column(name).take(rows_a)
    if "date" in before.table.column_names:
        columns["date_before"] = before.table.column("date").take(rows_a)
    if "date" in after.table.column_names:
        columns["date_after"] = after.table.column("date").take(rows_b)
    return columns


def _chip_table(
    before: EmbeddingCollection, after: EmbeddingCollection, matched: Matched, distance: np.ndarray
) -> pa.Table:
    import pyarrow as pa

    from clay_core.parquet import GEOMETRY

    columns = _base_columns(before, after, matched)
    columns["change"] = pa.array(distance, pa.float32())
    columns[GEOMETRY] = before.table.column(GEOMETRY).take(pa.array(matched.rows_a, pa.int64()))
    return pa.table(columns)


def _patch_table(
    before: EmbeddingCollection, after: EmbeddingCollection, matched: Matched, distance: np.ndarray
) -> pa.Table:
    """One row per patch of every matched chip, with the patch polygon (writer's rule, from utm_bbox/epsg)."""
    import pyarrow as pa

    from clay_core.parquet import GEOMETRY, rings_to_wkb
    from clay_core.patches import explode_patch_rings, patch_rings_crs84
    from clay_core.similarity import exterior_rings

    pairs, h, w = distance.shape
    chip = _base_columns(before, after, matched)
    repeat = pa.array(np.repeat(np.arange(pairs), h * w), pa.int64())
    columns = {name: values.take(repeat) for name, values in chip.items()}
    grid_rows, grid_cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    columns["patch_row"] = pa.array(np.tile(grid_rows.ravel(), pairs), pa.int32())
    columns["patch_col"] = pa.array(np.tile(grid_cols.ravel(), pairs), pa.int32())
    columns["change"] = pa.array(distance.reshape(-1), pa.float32())
    if "utm_bbox" in chip:
        rings = patch_rings_crs84(
            np.asarray(chip["utm_bbox"].to_pylist(), dtype=np.float64),
            chip["epsg"].to_numpy(zero_copy_only=False),
            h,
            w,
        )
    else:
        wkb = before.table.column(GEOMETRY).take(pa.array(matched.rows_a, pa.int64())).to_pylist()
        rings = explode_patch_rings(exterior_rings(wkb), h, w)
    columns[GEOMETRY] = pa.array(rings_to_wkb(np.asarray(rings).reshape(pairs * h * w, -1, 2)), pa.binary())
    return pa.table(columns)
