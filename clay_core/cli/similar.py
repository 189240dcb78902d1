"""`clay similar EMB.gpq (--chip ID | --point LON,LAT) [--top K] -o SCORED.gpq`: score every chip against
a query and write the matches (best first) with `similarity` and `rank` columns."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clay_core.errors import ClayInputError
from clay_core.progress import JsonLinesReporter, Reporter

if TYPE_CHECKING:  # numpy and pyarrow load in run(): argument parsing stays light
    import numpy as np
    import pyarrow as pa

SHOWN_MATCHES = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "similar", help="find the chips most similar to a query chip or point",
        description="Cosine similarity of every chip with a query: mean of the positive examples minus the mean "
                    "of the negative ones (on unit-length vectors). Writes the matches best first.")
    parser.add_argument("embeddings", type=Path, metavar="EMB.gpq", help="embeddings GeoParquet file")
    parser.add_argument("--chip", action="append", default=[], metavar="ID", help="positive example chip id")
    parser.add_argument("--point", action="append", default=[], metavar="LON,LAT",
                        help="positive example: the chip containing this point (degrees)")
    parser.add_argument("--negative-chip", action="append", default=[], metavar="ID",
                        help="negative example chip id (the query moves away from it)")
    parser.add_argument("--negative-point", action="append", default=[], metavar="LON,LAT",
                        help="negative example: the chip containing this point")
    parser.add_argument("--top", type=int, default=0, metavar="K", help="keep the K best matches (0: all)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="keep matches with similarity >= T (in [-1, 1])")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="SCORED.gpq")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def resolve_rows(chip_ids: list[str], points: list[str], all_chip_ids: list[str], rings: list[np.ndarray] | None,
                 what: str) -> list[int]:
    """Rows of the file for the given chip ids and points (patch files: every patch of a chip id)."""
    from clay_core.similarity import parse_point, row_at_point

    rows: list[int] = []
    if chip_ids:
        by_id: dict[str, list[int]] = {}
        for row, chip_id in enumerate(all_chip_ids):
            by_id.setdefault(chip_id, []).append(row)
        for chip_id in chip_ids:
            if chip_id not in by_id:
                example = all_chip_ids[0] if all_chip_ids else "none"
                raise ClayInputError(f"{what} chip id {chip_id!r} is not in the file (ids look like {example!r})")
            rows.extend(by_id[chip_id])
    for text in points:
        lon, lat = parse_point(text)
        rows.append(row_at_point(rings or [], lon, lat))
    return rows


def scored_table(table: pa.Table, vectors: np.ndarray, scores: np.ndarray, ranks: np.ndarray,
                 keep: np.ndarray) -> pa.Table:
    """The kept rows (best first) with the embeddings column restored right after `date`, as in the input."""
    import pyarrow as pa

    from clay_core.parquet import EMBEDDINGS

    kept = table.take(pa.array(keep, pa.int64()))
    embeddings = pa.FixedSizeListArray.from_arrays(pa.array(vectors[keep].reshape(-1), pa.float32()),
                                                   vectors.shape[1])
    position = kept.column_names.index("date") + 1 if "date" in kept.column_names else kept.num_columns
    kept = kept.add_column(position, EMBEDDINGS, embeddings)
    kept = kept.append_column("similarity", pa.array(scores[keep], pa.float32()))
    return kept.append_column("rank", pa.array(ranks[keep], pa.int32()))


def point_rings(data: Any, embeddings: Path) -> list[np.ndarray]:
    """Chip polygons to look --point up in; a file of points (e.g. from embed-locations) has none."""
    from clay_core.similarity import exterior_rings
    from clay_core.wkb import geometry_type_name

    wkb = data.geometry_wkb
    kinds = {geometry_type_name(value) for value in wkb[:1000] if value is not None}
    if not wkb or not kinds <= {"Polygon", "MultiPolygon"}:
        found = ", ".join(sorted(kinds)) or "no geometry"
        raise ClayInputError(f"--point/--negative-point need chip polygons, but {embeddings} holds {found}: "
                             "pick the query rows with --chip ID (point files: the point id) instead")
    return exterior_rings(wkb)


def output_geo(geo: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    """The input's `geo` metadata (types, CRS, covering, version kept as they were) with the bbox of the
    geometry column updated to the rows that are left."""
    from clay_core.parquet import GEOMETRY, bbox_of_wkb

    geo = copy.deepcopy(geo)
    primary = geo.get("primary_column", GEOMETRY)
    column = geo.get("columns", {}).get(primary)
    if column is None or primary not in table.column_names:
        return geo
    bbox = bbox_of_wkb(table.column(primary).to_pylist()) if table.num_rows else None
    if bbox:
        column["bbox"] = bbox
    else:
        column.pop("bbox", None)
    return geo


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core.parquet import GEO_KEY, read_embeddings, write_table_atomic
    from clay_core.similarity import SimilarityIndex, select_matches

    if not (args.chip or args.point):
        raise ClayInputError("give a query: --chip ID or --point LON,LAT (repeat for several positives)")
    if args.threshold is not None and not -1.0 <= args.threshold <= 1.0:
        raise ClayInputError(f"--threshold must be in [-1, 1], got {args.threshold}")
    reporter.start(3, "reading embeddings")
    data = read_embeddings(args.embeddings)
    if len(data) == 0:
        raise ClayInputError(f"{args.embeddings} has no rows")
    chip_ids = data.chip_ids or [str(i) for i in range(len(data))]
    rings = point_rings(data, args.embeddings) if (args.point or args.negative_point) else None
    positives = resolve_rows(args.chip, args.point, chip_ids, rings, "positive")
    negatives = resolve_rows(args.negative_chip, args.negative_point, chip_ids, rings, "negative")
    reporter.advance(1, "scoring")
    index = SimilarityIndex(data.vectors)
    scored = index.score(index.query(positives, negatives))
    keep = select_matches(scored.scores, args.top, args.threshold)
    reporter.advance(1, "writing")
    table = scored_table(data.table, data.vectors, scored.scores, scored.ranks, keep)
    metadata = dict(data.table.schema.metadata or {})
    if data.geo:  # the bbox must describe the rows that are left
        metadata[GEO_KEY] = json.dumps(output_geo(data.geo, table)).encode()
    write_table_atomic(args.output, table.replace_schema_metadata(metadata), overwrite=args.overwrite)
    reporter.advance(1, "done")
    result = summary(args.output, chip_ids, positives, negatives, keep, scored.scores)
    reporter.result(result)
    if not isinstance(reporter, JsonLinesReporter):  # people get a short table; the plugin gets the JSON
        print_summary(result)
    return 0


def summary(output: Path, chip_ids: list[str], positives: list[int], negatives: list[int], keep: np.ndarray,
            scores: np.ndarray) -> dict[str, Any]:
    return {
        "output": str(output),
        "rows": int(len(keep)),
        "positives": sorted({chip_ids[row] for row in positives}),
        "negatives": sorted({chip_ids[row] for row in negatives}),
        "best": [{"chip_id": chip_ids[row], "similarity": round(float(scores[row]), 6)}
                 for row in keep[:SHOWN_MATCHES]],
    }


def print_summary(result: dict[str, Any]) -> None:
    print(f"wrote {result['rows']} matches to {result['output']}")
    for match in result["best"]:
        print(f"  {match['similarity']:+.4f}  {match['chip_id']}")
