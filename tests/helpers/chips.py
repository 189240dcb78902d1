"""Small real GeoTIFFs for training and embedding tests: a Clay chip folder and a multi-band raster."""

from __future__ import annotations

from pathlib import Path

import numpy as np

UTM_ORIGIN = (330000.0, 5820000.0)  # EPSG:32633, inside MGRS tile 33UUU


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


def write_band_raster(
    path: Path, bands: tuple[str, ...] = ("B02", "B03", "B04", "B08"), size: int = 96
) -> Path:
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
