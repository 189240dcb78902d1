"""`clay change BEFORE.gpq AFTER.gpq -o CHANGE.gpq [--patches]`: the cosine distance of every chip (or patch) to
the same footprint at the other date, matched by footprint (not by row order)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clay_core.errors import ClayInputError
from clay_core.progress import JsonLinesReporter, Reporter

SHOWN = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "change",
        help="how much each chip changed between two dates (cosine distance)",
        description="Matches the chips of two embedding files by footprint (epsg + utm_bbox, else the polygon) and "
        "writes `change` = 1 - cos(before, after) in [0, 2] per chip, or per patch with --patches "
        "(patch-level files). Most changed first.",
    )
    parser.add_argument("before", type=Path, metavar="BEFORE.gpq")
    parser.add_argument("after", type=Path, metavar="AFTER.gpq")
    parser.add_argument(
        "--patches", action="store_true", help="one row per patch (needs patch- or group-level embeddings)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="CHANGE.gpq")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def _footprints(collection, patch_keys: bool) -> tuple[list[tuple], str]:
    import numpy as np

    from clay_core.change import footprint_keys
    from clay_core.wkb import bounds as wkb_bounds

    table = collection.table
    names = set(table.column_names)
    utm = epsg = bounds = patch = None
    if {"utm_bbox", "epsg"} <= names and table.column("utm_bbox").null_count == 0:
        utm = np.asarray(table.column("utm_bbox").to_pylist(), dtype=np.float64)
        epsg = table.column("epsg").to_numpy(zero_copy_only=False)
    elif collection.geometry_wkb:
        bounds = np.array([wkb_bounds([value]) for value in collection.geometry_wkb], dtype=np.float64)
    if patch_keys and {"patch_row", "patch_col"} <= names:
        patch = np.column_stack([table.column("patch_row").to_numpy(), table.column("patch_col").to_numpy()])
    return footprint_keys(utm, epsg, bounds, patch)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    import numpy as np
    import pyarrow as pa

    from clay_core import validate
    from clay_core.change import cosine_distance, match_footprints, per_patch_distance
    from clay_core.collection import read_collection

    args.output = validate.output_file(args.output, args.overwrite)
    reporter.start(3, "reading embeddings")
    before, after = read_collection([args.before]), read_collection([args.after])
    exploded = "patch_row" in before.table.column_names
    keys_a, kind = _footprints(before, exploded)
    keys_b, kind_b = _footprints(after, exploded)
    if kind != kind_b:
        raise ClayInputError(
            f"{args.before.name} is matched by {kind} and {args.after.name} by {kind_b}: write both with the same tool"
        )
    matched = match_footprints(keys_a, keys_b, kind)
    reporter.advance(1, "comparing")
    if before.dim != after.dim:
        raise ClayInputError(
            f"the files have {before.dim} and {after.dim} values per row: embed both dates with "
            "the same model and level"
        )
    if args.patches and not exploded:
        distance = per_patch_distance(
            before.vectors, after.vectors, matched.rows_a, matched.rows_b, before.shape_per_row
        )
        table = _patch_table(before, after, matched, distance)
    else:
        distance = cosine_distance(before.vectors, after.vectors, matched.rows_a, matched.rows_b)
        table = _chip_table(before, after, matched, distance)
    order = np.argsort(-np.nan_to_num(table.column("change").to_numpy(zero_copy_only=False), nan=-1.0), kind="stable")
    table = table.take(pa.array(order, pa.int64()))
    reporter.advance(1, "writing")
    _write(args.output, table, before.geo, args.overwrite)
    reporter.advance(1, "done")
    values = table.column("change").to_numpy(zero_copy_only=False)
    finite = values[np.isfinite(values)]
    result: dict[str, Any] = {
        "output": str(args.output),
        "rows": table.num_rows,
        "matched_chips": len(matched.rows_a),
        "only_in_before": matched.only_in_a,
        "only_in_after": matched.only_in_b,
        "matched_by": matched.key,
        "change_median": round(float(np.median(finite)), 6) if finite.size else None,
        "change_max": round(float(finite.max()), 6) if finite.size else None,
        "most_changed": [
            {"chip_id": chip, "change": round(float(value), 6)}
            for chip, value in zip(table.column("chip_id").to_pylist()[:SHOWN], values[:SHOWN], strict=False)
        ],
    }
    reporter.result(result)
    if not isinstance(reporter, JsonLinesReporter):
        print(
            f"{result['matched_chips']} chips matched by {matched.key} ({matched.only_in_a} only before, "
            f"{matched.only_in_b} only after); median change {result['change_median']}; wrote {args.output}"
        )
        for item in result["most_changed"]:
            print(f"  {item['change']:.4f}  {item['chip_id']}")
    return 0


def _base_columns(before, after, matched) -> dict[str, Any]:
    import pyarrow as pa

    rows_a = pa.array(matched.rows_a, pa.int64())
    rows_b = pa.array(matched.rows_b, pa.int64())
    columns: dict[str, Any] = {}
    for name in ("chip_id", "row", "col", "epsg", "utm_bbox", "patch_row", "patch_col"):
        if name in before.table.column_names:
            columns[name] = before.table.column(name).take(rows_a)
    if "date" in before.table.column_names:
        columns["date_before"] = before.table.column("date").take(rows_a)
    if "date" in after.table.column_names:
        columns["date_after"] = after.table.column("date").take(rows_b)
    return columns


def _chip_table(before, after, matched, distance):
    import pyarrow as pa

    from clay_core.parquet import GEOMETRY

    columns = _base_columns(before, after, matched)
    columns["change"] = pa.array(distance, pa.float32())
    columns[GEOMETRY] = before.table.column(GEOMETRY).take(pa.array(matched.rows_a, pa.int64()))
    return pa.table(columns)


def _patch_table(before, after, matched, distance):
    """One row per patch of every matched chip, with the patch polygon (writer's rule, from utm_bbox/epsg)."""
    import numpy as np
    import pyarrow as pa

    from clay_core.parquet import GEOMETRY, rings_to_wkb
    from clay_core.patches import explode_patch_rings, patch_rings_crs84
    from clay_core.similarity import exterior_rings

    pairs, h, w = distance.shape
    chip = _base_columns(before, after, matched)
    repeat = np.repeat(np.arange(pairs), h * w)
    columns = {name: values.take(pa.array(repeat, pa.int64())) for name, values in chip.items()}
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


def _write(path: Path, table, geo: dict[str, Any], overwrite: bool) -> None:
    import pyarrow.parquet as pq

    from clay_core.atomic import atomic_output
    from clay_core.collection import check_writable, output_geo
    from clay_core.parquet import GEO_KEY, GEOMETRY

    check_writable(path, overwrite)
    metadata = {}
    if geo:
        geo = output_geo(geo, table.column(GEOMETRY).to_pylist())
        for column in geo.get("columns", {}).values():
            column.pop("covering", None)  # no bbox struct column in this output
        metadata[GEO_KEY] = json.dumps(geo).encode()
    with atomic_output(path, overwrite=overwrite) as temporary:
        pq.write_table(table.replace_schema_metadata(metadata), temporary, compression="zstd")
