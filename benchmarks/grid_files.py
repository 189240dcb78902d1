"""Synthetic embeddings files for the benchmarks: a square grid of chips on the 33UUU grid with random vectors."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from clay_core.parquet import write_geoparquet
from clay_core.sources.base import ChipRecord

CHIP_M = 1280.0  # 128 px at 10 m
ORIGIN = (300000.0, 5900040.0)


def grid_records(rows: int) -> list[ChipRecord]:
    """`rows` chips in a square grid, row-major from the north-west corner."""
    side = int(np.ceil(np.sqrt(rows)))
    x0, y0 = ORIGIN
    return [
        ChipRecord(
            f"33UUU_{i // side:04d}_{i % side:04d}",
            f"/s/{i}.tif",
            datetime.date(2021, 6, 1),
            32633,
            (
                x0 + CHIP_M * (i % side),
                y0 - CHIP_M * (i // side + 1),
                x0 + CHIP_M * (i % side + 1),
                y0 - CHIP_M * (i // side),
            ),
            i // side,
            i % side,
            "33UUU",
            128,
            10.0,
        )
        for i in range(rows)
    ]


def write_grid_file(path: Path, rows: int, dim: int, seed: int = 0) -> Path:
    """A mean-level embeddings file of `rows` chips with standard-normal `dim`-d vectors."""
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return write_geoparquet(path, grid_records(rows), vectors, {"model": "bench", "level": "mean"})
