"""`clay layer-cache EMB.gpq -o FOLDER`: convert an embeddings file into the flat numpy arrays the QGIS plugin
loads when its own Python has no pyarrow (see clay_core/layer_cache.py). Needs pyarrow, never torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from clay_core.cli._common import emit_result
from clay_core.progress import Reporter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "layer-cache",
        help="convert an embeddings file for a QGIS without pyarrow",
        description="Write the vectors, geometry and scalar columns of an embeddings GeoParquet file as .npy "
        "files in FOLDER, for the QGIS plugin to load with numpy alone. An older layer cache in FOLDER is "
        "replaced; a folder that holds anything else is refused.",
    )
    parser.add_argument("embeddings", type=Path, metavar="EMB.gpq", help="embeddings GeoParquet file")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FOLDER", help="cache folder to write")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core.layer_cache import check_destination, from_embedding_table, write_layer_cache
    from clay_core.parquet.reader import read_embeddings

    check_destination(args.output)  # before the (slow) read: a wrong -o fails at once
    reporter.start(2, "reading embeddings")
    rows = from_embedding_table(read_embeddings(args.embeddings))
    reporter.advance(1, "writing the layer cache")
    folder = write_layer_cache(rows, args.output, args.embeddings)
    reporter.advance(1, "done")
    result = {"folder": str(folder.absolute()), "rows": len(rows), "dim": int(rows.vectors.shape[1])}
    emit_result(reporter, result, args.json, lambda r: f"wrote {r['rows']} rows to {r['folder']}")
    return 0
