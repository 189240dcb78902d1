"""Building the output features of a search over several files (clay:similarity, clay:classify, clay:cluster):
prints one JSON object.

    . scripts/env.sh && QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/output_features.py [--rows 100000]

Two files of --rows / 2 chips each are written and read through clay_qgis.vector_cache; then every row (as
clay:cluster asks) becomes a QgsFeature with its scores, rank, example role and source file:
1. one_pass: `Search.features` (one features_for call per file, attributes built column by column);
2. per_row: one features_for call per row, the way Search.features built them before.
Median of --repeats; `ratio` = per_row / one_pass, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.grid_files import write_grid_file  # noqa: E402


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from clay_core.similarity import centre_jointly
    from clay_qgis import layers
    from clay_qgis.algorithms.search import Search, search_fields
    from clay_qgis.vector_cache import load_embedding_set

    with tempfile.TemporaryDirectory() as folder:
        half = args.rows // 2
        paths = [
            write_grid_file(Path(folder) / "a.gpq", half, 16, 0),
            write_grid_file(Path(folder) / "b.gpq", args.rows - half, 16, 1),
        ]
        targets = [load_embedding_set(path) for path in paths]
    centre_jointly([target.index for target in targets])
    search = Search(targets=targets, offsets=np.array([0, half, args.rows]))
    fields = search_fields("chips")
    rows = np.arange(args.rows)
    scores = np.random.default_rng(2).random(args.rows)
    ranks = np.argsort(np.argsort(-scores)) + 1
    examples = {3: "positive", args.rows - 1: "negative"}

    def one_pass() -> list:
        return search.features(fields, rows, layers.score_values(rows, scores, ranks, examples))

    def per_row() -> list:
        out = []
        for row in rows.tolist():
            index, local = search.locate(row)
            values = layers.score_values([row], scores, ranks, examples)
            values["source_file"] = [targets[index].path.name]
            out += layers.features_for(targets[index], fields, [local], values)
        return out

    a, b = one_pass(), per_row()
    assert [f.attributes() for f in a[-3:]] == [f.attributes() for f in b[-3:]]  # the same features
    one_pass_s = median_seconds(one_pass, args.repeats)
    per_row_s = median_seconds(per_row, args.repeats)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "files": len(targets),
                "one_pass_s": round(one_pass_s, 3),
                "per_row_s": round(per_row_s, 3),
                "ratio": round(per_row_s / one_pass_s, 2),
                "repeats": args.repeats,
            }
        )
    )


if __name__ == "__main__":
    main()
