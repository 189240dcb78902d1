"""Small real GeoTIFFs for source, training and embedding tests: Clay chips (one, or a folder of them)
and a multi-band raster with named bands."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

UTM_ORIGIN = (330000.0, 5820000.0)  # EPSG:32633, inside MGRS tile 33UUU
CHIP_PX = 64


def write_chip(
    folder: Path,
    *,
    mgrs: str = "33UUU",
    date: str = "2021-06-01",
    row: int = 0,
    col: int = 0,
    counter: int = 0,
    size: int = CHIP_PX,
    bands: int = 13,
    crs: bool = True,
    seed: int = 0,
    date_tag: str | None = None,
    name: str | None = None,
) -> Path:
    """A Clay-style chip GeoTIFF on the tile's chip grid (float32, deflate, `date` tag)."""
    import rasterio
    from affine import Affine

    from clay_core.grid.mgrs import parse_tile

    tile = parse_tile(mgrs)
    x0, y0 = tile.origin
    transform = Affine(10.0, 0.0, x0 + col * size * 10.0, 0.0, -10.0, y0 - row * size * 10.0)
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(100, 3000, size=(bands, size, size)).astype(np.float32)
    day = datetime.date.fromisoformat(date)
    path = folder / (name or f"claytile_{mgrs}_{day:%Y%m%d}_v02_{counter:04d}.tif")
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "float32",
        "transform": transform,
        "compress": "deflate",
    }
    if crs:
        profile["crs"] = f"EPSG:{tile.epsg}"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        dst.update_tags(date=date_tag or date)
    return path


def _pattern(size: int, shift: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return np.sin(2 * np.pi * (xx + shift)) * np.cos(2 * np.pi * yy)


def write_chip_folder(folder: Path, count: int = 4, size: int = 40) -> Path:
    """Clay-style chip GeoTIFFs (`claytile_*.tif`): 13 float32 bands in v0 order, a `date` tag, EPSG:32633, 10 m;
    smooth learnable patterns around each band's normalisation mean."""
    import rasterio
    from rasterio.transform import from_origin

    from clay_core.sensors import CLAY_V0

    folder.mkdir(parents=True, exist_ok=True)
    means = CLAY_V0.means()[:, None, None]
    stds = CLAY_V0.stds()[:, None, None]
    for index in range(count):
        pixels = (means + 0.5 * stds * _pattern(size, 0.25 * index)[None]).astype(np.float32)
        origin = (UTM_ORIGIN[0] + index * size * 10.0, UTM_ORIGIN[1])
        path = folder / f"claytile_33UUU_20200601_v02_{index:04d}.tif"
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=size,
            height=size,
            count=13,
            dtype="float32",
            crs="EPSG:32633",
            transform=from_origin(*origin, 10.0, 10.0),
        ) as dataset:
            dataset.write(pixels)
            dataset.update_tags(date="2020-06-01")
    return folder


def write_band_raster(path: Path, bands: tuple[str, ...] = ("B02", "B03", "B04", "B08"), size: int = 96) -> Path:
    """One GeoTIFF with a band per Sentinel-2 band, named in the band descriptions (as GDAL exports do),
    uint16 reflectance-like values, EPSG:32633 at 10 m with its top-left corner at UTM_ORIGIN."""
    import rasterio
    from rasterio.transform import from_origin

    from clay_core.sensors import CLAY_V0

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=len(bands),
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(*UTM_ORIGIN, 10.0, 10.0),
    ) as dataset:
        for index, name in enumerate(bands, start=1):
            band = CLAY_V0.band(name)
            values = band.mean + 0.5 * band.std * _pattern(size, 0.1 * index)
            dataset.write(np.clip(values, 1, 65535).astype(np.uint16), index)
            dataset.set_band_description(index, name)
        dataset.update_tags(date="2020-06-01")
    return path
