"""Fixtures for the chip sources: tiny generated Clay chips, the local S3, per-band scenes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.chips import write_chip
from tests.helpers.s3 import s3_bucket, s3_server  # noqa: F401  (fixtures)


@pytest.fixture
def chip_dir(tmp_path: Path) -> Path:
    """Four good chips of 33UUU: two dates x two grid cells, in date subfolders (the S3 layout)."""
    folder = tmp_path / "chips"
    for i, (date, row, col) in enumerate(
        [("2021-06-01", 3, 4), ("2021-06-01", 3, 5), ("2021-07-15", 3, 4), ("2021-07-15", 3, 5)]
    ):
        write_chip(folder / date, date=date, row=row, col=col, counter=i, seed=i)
    return folder
