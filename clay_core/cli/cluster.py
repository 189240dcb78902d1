"""`clay cluster EMB.gpq... -k K [--seed S] -o OUT.gpq`: k-means on the embeddings, every row with its `cluster`."""

from __future__ import annotations

import argparse
from pathlib import Path

from clay_core.cli._examples import add_inputs_argument
from clay_core.progress import JsonLinesReporter, Reporter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="k-means clusters of the embeddings (a land-cover sketch without labels)",
        description="k-means (k-means++ seeding, seeded and deterministic) on the unit-length embeddings of every "
        "given file; writes every row with `cluster` (0 = the largest) and `cluster_distance`.",
    )
    add_inputs_argument(parser)
    parser.add_argument("-k", "--clusters", type=int, default=8, metavar="K", help="number of clusters (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the k-means++ seeding (default 0)")
    parser.add_argument("--max-iterations", type=int, default=100, metavar="N")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.gpq")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    import numpy as np
    import pyarrow as pa

    from clay_core import validate
    from clay_core.cluster import kmeans
    from clay_core.collection import read_collection, write_rows
    from clay_core.similarity import SimilarityIndex

    args.output = validate.output_file(args.output, args.overwrite)
    # -k and --max-iterations were checked by cli._common.check_arguments; --seed is this command's own rule
    args.seed = validate.integer(args.seed, "--seed", minimum=0)
    reporter.start(3, "reading embeddings")
    collection = read_collection(args.embeddings)
    reporter.advance(1, "clustering")
    clusters = kmeans(
        SimilarityIndex(collection.vectors), args.clusters, seed=args.seed, max_iterations=args.max_iterations
    )
    reporter.advance(1, "writing")
    rows = np.arange(len(collection))
    write_rows(
        args.output,
        collection,
        rows,
        {
            "cluster": pa.array(clusters.labels, pa.int32()),
            "cluster_distance": pa.array(clusters.distances, pa.float32()),
        },
        overwrite=args.overwrite,
        metadata_update={"clusters": {"k": args.clusters, "seed": args.seed}},
    )
    reporter.advance(1, "done")
    sizes = np.bincount(clusters.labels[clusters.labels >= 0], minlength=args.clusters).tolist()
    result = {
        "output": str(args.output),
        "files": len(collection.files),
        "rows": len(collection),
        "k": args.clusters,
        "seed": args.seed,
        "iterations": clusters.iterations,
        "inertia": round(clusters.inertia, 6),
        "sizes": sizes,
        "no_data_rows": int(np.count_nonzero(clusters.labels < 0)),
    }
    reporter.result(result)
    if not isinstance(reporter, JsonLinesReporter):
        print(
            f"{args.clusters} clusters of {len(collection)} rows after {clusters.iterations} iterations "
            f"(sizes {sizes}); wrote {args.output}"
        )
    return 0
