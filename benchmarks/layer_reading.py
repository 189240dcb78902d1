"""Reading an embeddings file in QGIS's Python, each way clay_qgis.readers has: prints one JSON object.

    . scripts/env.sh && .venv/bin/python benchmarks/layer_reading.py [--rows 20000] [--dim 768] [--repeats 3]

1. pyarrow: clay_core.parquet.reader.read_embeddings + the LayerRows conversion (QGIS with pyarrow).
2. runtime cache, first read: `python -m clay_core layer-cache` in a subprocess (what the plugin's worker runs
   in the managed runtime when QGIS has neither pyarrow nor GDAL's Parquet driver), then reading the .npy files.
3. runtime cache, later reads: the .npy files only (numpy only; what every read of an
   unchanged file costs after the first).
Also the file size and the cache folder size. Median of --repeats after one warm-up; random vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.grid_files import write_grid_file  # noqa: E402
from clay_core import layer_cache  # noqa: E402
from clay_core.parquet import read_embeddings  # noqa: E402


def timed(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source = write_grid_file(Path(scratch) / "e.gpq", args.rows, args.dim)
        folder = Path(scratch) / "cache"
        env = {**os.environ, "PYTHONPATH": str(REPO)}

        def convert() -> None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "clay_core",
                    "--progress",
                    "none",
                    "layer-cache",
                    str(source),
                    "-o",
                    str(folder),
                ],
                check=True,
                env=env,
                capture_output=True,
            )

        def first_read() -> None:
            convert()
            np.asarray(layer_cache.read_layer_cache(folder).vectors).sum()

        def later_read() -> None:
            np.asarray(layer_cache.read_layer_cache(folder).vectors).sum()  # touch every vector once

        def pyarrow_read() -> None:
            layer_cache.from_embedding_table(read_embeddings(source)).vectors.sum()

        result = {
            "rows": args.rows,
            "dim": args.dim,
            "file_mb": round(source.stat().st_size / 1e6, 1),
            "pyarrow_s": round(timed(pyarrow_read, args.repeats), 3),
            "runtime_first_read_s": round(timed(first_read, args.repeats), 3),
            "runtime_conversion_only_s": round(timed(convert, args.repeats), 3),
            "runtime_later_read_s": round(timed(later_read, args.repeats), 3),
            "cache_mb": round(folder_bytes(folder) / 1e6, 1),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
