"""Fixtures for the chip sources: tiny generated Clay chips, the local S3, per-band scenes."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from clay_core.grid.mgrs import parse_tile
from tests.s3 import s3_bucket, s3_server  # noqa: F401  (fixtures)

CHIP_PX = 64


def write_chip(folder: Path, *, mgrs: str = "33UUU", date: str = "2021-06-01", row: int = 0, col: int = 0,
               counter: int = 0, size: int = CHIP_PX, bands: int = 13, crs: bool = True, seed: int = 0,
               date_tag: str | None = None, name: str | None = None) -> Path:
    """A Clay-style chip GeoTIFF on the tile's chip grid (float32, deflate, `date` tag)."""
    tile = parse_tile(mgrs)
    x0, y0 = tile.origin
    transform = Affine(10.0, 0.0, x0 + col * size * 10.0, 0.0, -10.0, y0 - row * size * 10.0)
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(100, 3000, size=(bands, size, size)).astype(np.float32)
    day = datetime.date.fromisoformat(date)
    path = folder / (name or f"claytile_{mgrs}_{day:%Y%m%d}_v02_{counter:04d}.tif")
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": bands, "dtype": "float32",
               "transform": transform, "compress": "deflate"}
    if crs:
        profile["crs"] = f"EPSG:{tile.epsg}"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        dst.update_tags(date=date_tag or date)
    return path


@pytest.fixture
def chip_dir(tmp_path: Path) -> Path:
    """Four good chips of 33UUU: two dates x two grid cells, in date subfolders (the S3 layout)."""
    folder = tmp_path / "chips"
    for i, (date, row, col) in enumerate([("2021-06-01", 3, 4), ("2021-06-01", 3, 5),
                                          ("2021-07-15", 3, 4), ("2021-07-15", 3, 5)]):
        write_chip(folder / date, date=date, row=row, col=col, counter=i, seed=i)
    return folder
