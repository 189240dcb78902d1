"""`clay change BEFORE.gpq AFTER.gpq -o CHANGE.gpq [--patches]`: the cosine distance of every chip (or patch) to
the same footprint at the other date, matched by footprint (not by row order)."""

from __future__ import annotations

import argparse
from pathlib import Path

from clay_core.cli._common import match_name
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


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core import validate
    from clay_core.change import compare, write_change
    from clay_core.collection import read_collection

    args.output = validate.output_file(args.output, args.overwrite)
    reporter.start(3, "reading embeddings")
    before, after = read_collection([args.before]), read_collection([args.after])
    reporter.advance(1, "comparing")
    change = compare(before, after, patches=args.patches)
    reporter.advance(1, "writing")
    write_change(args.output, change, overwrite=args.overwrite)
    reporter.advance(1, "done")
    result = {"output": str(args.output), **change.summary(SHOWN)}
    reporter.result(result)
    if not isinstance(reporter, JsonLinesReporter):
        print(
            f"{result['matched_chips']} chips matched by {result['matched_by']} ({result['only_in_before']} only "
            f"before, {result['only_in_after']} only after); median change {result['change_median']}; "
            f"wrote {args.output}"
        )
        for item in result["most_changed"]:
            print(f"  {item['change']:.4f}  {match_name(item)}")
    return 0
