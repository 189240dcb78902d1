"""Helpers for the bad-input tests (CLI and QGIS): tiny synthetic GeoTIFFs and a digest of every file under
a folder, to show that pre-existing outputs come out of a failed run byte-identical."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

UTM33 = "EPSG:32633"
ORIGIN = (500000.0, 5000000.0)  # 15 E, 45.1 N in zone 33


def write_geotiff(
    path: Path,
    *,
    width: int = 128,
    height: int = 128,
    bands: Sequence[str] = ("B04", "B03", "B02"),
    crs: str | None = UTM33,
    origin: tuple[float, float] = ORIGIN,
    nodata: float | None = None,
    fill: float | None = None,
    date: str | None = "2020-01-01",
    seed: int = 0,
    tiled: bool = False,
) -> Path:
    """A uint16 raster at 10 m with named bands (descriptions) and a date tag; `fill` makes every pixel that
    value (e.g. the nodata value)."""
    import rasterio
    from affine import Affine

    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": len(bands),
        "dtype": "uint16",
        "transform": Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1]),
    }
    if crs:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    shape = (len(bands), height, width)
    pixels = (
        np.full(shape, fill, dtype=np.uint16)
        if fill is not None
        else np.random.default_rng(seed).integers(1, 4000, shape, dtype=np.uint16)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(pixels)
        dataset.descriptions = tuple(bands)
        if date:
            dataset.update_tags(date=date)
    return path


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (relative path -> digest); folders as entries too, so a
    leftover `.parts` folder or temporary file shows up as a difference."""
    digest = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_dir():
            digest[relative + "/"] = "folder"
        elif path.is_file():
            digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest
