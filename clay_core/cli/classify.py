"""`clay classify EMB.gpq... --positive ID --negative ID [--labels FILE --label-field F] -o OUT.gpq`: fit a
regularised logistic regression on labelled chips and write every row's `probability` (best first)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from clay_core.cli._common import match_name
from clay_core.cli._examples import SHOWN_MATCHES, add_example_arguments, add_inputs_argument
from clay_core.errors import ClayInputError
from clay_core.progress import JsonLinesReporter, Reporter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="labelled chips -> a classifier -> the probability of every chip",
        description="Fits an L2-regularised logistic regression (numpy) on the centred embeddings of positive and "
        "negative example chips (ids, points or a labelled point file) and writes every row with its "
        "`probability` of being positive, best first.",
    )
    add_inputs_argument(parser)
    add_example_arguments(
        parser,
        chip="--positive",
        point="--positive-point",
        negative_chip="--negative",
        negative_point="--negative-point",
    )
    parser.add_argument("--labels", type=Path, metavar="FILE", help="point (or polygon) file with a label field")
    parser.add_argument(
        "--label-field",
        default="label",
        metavar="FIELD",
        help="the field of --labels that says positive or negative (default: label)",
    )
    parser.add_argument(
        "--positive-value",
        action="append",
        default=[],
        metavar="VALUE",
        help="label value(s) that mean positive; every other value is negative (default: "
        "1/true/yes/positive vs 0/false/no/negative)",
    )
    parser.add_argument(
        "--l2",
        type=float,
        default=None,
        metavar="LAMBDA",
        help="regularisation strength (default 0.01; larger = smoother probabilities)",
    )
    parser.add_argument("--top", type=int, default=0, metavar="K", help="keep the K most probable rows (0: all)")
    parser.add_argument(
        "--threshold", type=float, default=None, metavar="P", help="keep rows with probability >= P (in [0, 1])"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.gpq")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    import numpy as np
    import pyarrow as pa

    from clay_core import validate
    from clay_core.classify import DEFAULT_L2, fit_classifier
    from clay_core.collection import read_collection, write_rows
    from clay_core.example_rows import ExampleFinder
    from clay_core.similarity import SimilarityIndex, ranks, select_matches

    if not (args.positive or args.positive_point or args.labels):
        raise ClayInputError(
            "give labelled examples: --positive ID / --positive-point LON,LAT and --negative ... "
            "or --labels FILE --label-field FIELD"
        )
    args.output = validate.output_file(args.output, args.overwrite)
    # --l2, --top, --threshold and the points were checked by cli._common.check_arguments before this runs
    l2 = DEFAULT_L2 if args.l2 is None else args.l2
    if args.labels is not None and not args.labels.is_file():
        raise ClayInputError(f"label file {args.labels} does not exist")
    reporter.start(3, "reading embeddings")
    collection = read_collection(args.embeddings)
    finder = ExampleFinder(collection)
    positives = finder.rows(args.positive, args.positive_point, "positive")
    negatives = finder.rows(args.negative, args.negative_point, "negative")
    outside = 0
    if args.labels:
        more_positive, more_negative, outside = finder.labelled_rows(args.labels, args.label_field, args.positive_value)
        positives += more_positive
        negatives += more_negative
    reporter.advance(1, "fitting")
    index = SimilarityIndex(collection.vectors)
    started = time.perf_counter()
    classifier = fit_classifier(index, positives, negatives, l2=l2)
    probability = classifier.probabilities(index)
    fit_ms = (time.perf_counter() - started) * 1000.0
    keep = select_matches(probability, args.top, args.threshold)
    labels = np.full(len(collection), None, dtype=object)
    labels[negatives] = "negative"
    labels[positives] = "positive"
    reporter.advance(1, "writing")
    write_rows(
        args.output,
        collection,
        keep,
        {
            "probability": pa.array(probability[keep], pa.float32()),
            "rank": pa.array(ranks(probability)[keep], pa.int32()),
            "label": pa.array(labels[keep].tolist(), pa.string()),
        },
        overwrite=args.overwrite,
        metadata_update={
            "classifier": {
                "kind": "logistic regression",
                "l2": l2,
                "positives": classifier.positives,
                "negatives": classifier.negatives,
            }
        },
    )
    reporter.advance(1, "done")
    best = keep[:SHOWN_MATCHES].tolist()
    result: dict[str, Any] = {
        "output": str(args.output),
        "files": len(collection.files),
        "searched": len(collection),
        "rows": int(len(keep)),
        "positives": classifier.positives,
        "negatives": classifier.negatives,
        "labels_outside_chips": outside,
        "fit_and_score_ms": round(fit_ms, 1),
        "above_half": int(np.count_nonzero(probability >= 0.5)),
        "best": [
            {"chip_id": name, "probability": round(float(probability[row]), 6), **collection.patch_position(row)}
            for name, row in zip(collection.row_names(best), best, strict=True)
        ],
    }
    reporter.result(result)
    if not isinstance(reporter, JsonLinesReporter):
        print(
            f"fitted on {result['positives']} positive / {result['negatives']} negative chips "
            f"({result['fit_and_score_ms']} ms); {result['above_half']} of {result['searched']} rows have "
            f"probability >= 0.5; wrote {result['rows']} rows to {result['output']}"
        )
        if outside:
            print(f"  {outside} labelled feature(s) lie outside every chip and were not used")
        for match in result["best"]:
            print(f"  {match['probability']:.4f}  {match_name(match)}")
    return 0
