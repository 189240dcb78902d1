"""`clay similar EMB.gpq... (--chip ID | --point LON,LAT) [--top K] [--raw] -o SCORED.gpq`: score every chip of
every given file (one search) against a query and write the matches (best first) with `similarity` and
`rank` columns (and `source_file`, so equal chip ids from different files stay apart)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clay_core.cli._common import match_name
from clay_core.cli._examples import SHOWN_MATCHES, add_example_arguments, add_inputs_argument
from clay_core.errors import ClayInputError
from clay_core.progress import JsonLinesReporter, Reporter

if TYPE_CHECKING:  # numpy loads in run(): argument parsing stays light
    import numpy as np

    from clay_core.collection import EmbeddingCollection


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "similar",
        help="find the chips most similar to a query chip or point",
        description="Centred cosine similarity of every chip of every given file with a query (one search): with "
        "unit vectors u and m their mean over all rows, cos(u - m, q - m) for q the mean of the "
        "positives (with negatives: cos(u - m, mean(pos) - mean(neg))). --raw: plain cosine. Writes "
        "the matches best first.",
    )
    add_inputs_argument(parser)
    add_example_arguments(parser)
    parser.add_argument(
        "--raw", action="store_true", help="plain cosine similarity (no centring; scores of one model crowd near 1)"
    )
    parser.add_argument("--top", type=int, default=0, metavar="K", help="keep the K best matches (0: all)")
    parser.add_argument(
        "--threshold", type=float, default=None, metavar="T", help="keep matches with similarity >= T (in [-1, 1])"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="SCORED.gpq")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    import numpy as np
    import pyarrow as pa

    from clay_core import validate
    from clay_core.collection import read_collection, write_rows
    from clay_core.example_rows import ExampleFinder
    from clay_core.similarity import SimilarityIndex, select_matches

    if not (args.chip or args.point):
        raise ClayInputError("give a query: --chip ID or --point LON,LAT (repeat for several positives)")
    # every value before the (possibly large) read: one shared rule set with the other commands and QGIS
    # (--top, --threshold and the points: cli._common.check_arguments, before any command runs)
    args.output = validate.output_file(args.output, args.overwrite)
    reporter.start(3, "reading embeddings")
    collection = read_collection(args.embeddings)
    if len(collection) == 0:
        raise ClayInputError(f"{', '.join(map(str, collection.files))}: no rows to search")
    finder = ExampleFinder(collection)
    positives = finder.rows(args.chip, args.point, "positive")
    negatives = finder.rows(args.negative_chip, args.negative_point, "negative")
    reporter.advance(1, "scoring")
    index = SimilarityIndex(collection.vectors)
    scored = index.search(positives, negatives, centred=not args.raw)
    keep = select_matches(scored.scores, args.top, args.threshold)
    reporter.advance(1, "writing")
    write_rows(
        args.output,
        collection,
        keep,
        {"similarity": pa.array(scored.scores[keep], pa.float32()), "rank": pa.array(scored.ranks[keep], pa.int32())},
        overwrite=args.overwrite,
        metadata_update={"similarity": "raw cosine" if args.raw else "centred cosine"},
    )
    reporter.advance(1, "done")
    result = summary(args.output, collection, positives, negatives, np.asarray(keep), scored.scores, args.raw)
    reporter.result(result)
    if not isinstance(reporter, JsonLinesReporter):  # people get a short table; the plugin gets the JSON
        print_summary(result)
    return 0


def summary(
    output: Path,
    collection: EmbeddingCollection,
    positives: list[int],
    negatives: list[int],
    keep: np.ndarray,
    scores: np.ndarray,
    raw: bool,
) -> dict[str, Any]:
    best = keep[:SHOWN_MATCHES].tolist()
    return {
        "output": str(output),
        "files": len(collection.files),
        "searched": len(collection),
        "rows": int(len(keep)),
        "scoring": "raw cosine" if raw else "centred cosine",
        "positives": sorted(set(collection.row_names(positives))),
        "negatives": sorted(set(collection.row_names(negatives))),
        "best": [
            {"chip_id": name, "similarity": round(float(scores[row]), 6), **collection.patch_position(row)}
            for name, row in zip(collection.row_names(best), best, strict=True)
        ],
    }


def print_summary(result: dict[str, Any]) -> None:
    print(
        f"wrote {result['rows']} matches ({result['scoring']}, {result['searched']} rows in "
        f"{result['files']} file(s)) to {result['output']}"
    )
    for match in result["best"]:
        print(f"  {match['similarity']:+.4f}  {match_name(match)}")
