"""Read one chip window of one or more bands onto a target UTM pixel grid, as float32 with NaN for nodata.

Fast path (the file is in the target CRS, north up): read just the overlapping part of the file, resampled
to the chip's pixels by GDAL (a 20 m band is read as 2x2 repeats of each pixel with nearest resampling) and
placed into a NaN-filled array; pixels outside the file stay NaN. Otherwise (another CRS): warp through a
WarpedVRT built for exactly this chip. Either way only the window is read, never the whole file.
"""

from __future__ import annotations

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

Bounds = tuple[float, float, float, float]

RESAMPLING = {name: getattr(Resampling, name) for name in ("nearest", "bilinear", "cubic", "average", "mode")}


def resampling_method(name: str) -> Resampling:
    from clay_core.errors import ClayInputError

    try:
        return RESAMPLING[name]
    except KeyError:
        raise ClayInputError(f"unknown resampling {name!r}; use one of {', '.join(RESAMPLING)}") from None


def read_chip(
    dataset,
    indexes: list[int],
    bounds: Bounds,
    epsg: int,
    size: int,
    resampling: Resampling = Resampling.nearest,
    zero_is_nodata: bool = False,
) -> np.ndarray:
    """Pixels of `indexes` (1-based band numbers) over `bounds` in EPSG:epsg as float32 [n, size, size]."""
    if _same_grid_family(dataset, epsg):
        pixels = _read_direct(dataset, indexes, bounds, size, resampling)
    else:
        pixels = _read_warped(dataset, indexes, bounds, epsg, size, resampling)
    return nodata_to_nan(pixels, dataset, indexes, zero_is_nodata)


def read_chip_from_band(
    band: np.ndarray,
    dataset,
    bounds: Bounds,
    epsg: int,
    size: int,
    resampling: Resampling = Resampling.nearest,
    zero_is_nodata: bool = False,
) -> np.ndarray | None:
    """Like `read_chip` for band 1 of `dataset`, cut from `band` (band 1 already decoded whole), as [1, size, size].

    None where GDAL must do it (another CRS, or a resampling other than nearest). Nearest picks the same
    source pixel GDAL's RasterIO does for a fractional window: the one under each output pixel's centre.
    """
    if resampling != Resampling.nearest or not _same_grid_family(dataset, epsg):
        return None
    out = np.full((1, size, size), np.nan, dtype=np.float32)
    overlap = _overlap(dataset, bounds, size)
    if overlap is None:
        return out
    (row0, row1, col0, col1), window = overlap
    rows = _nearest_indexes(window.row_off, window.height, row1 - row0, band.shape[0])
    cols = _nearest_indexes(window.col_off, window.width, col1 - col0, band.shape[1])
    out[0, row0:row1, col0:col1] = band[np.ix_(rows, cols)]
    return nodata_to_nan(out, dataset, [1], zero_is_nodata)


def _nearest_indexes(offset: float, extent: float, count: int, limit: int) -> np.ndarray:
    """Source pixel under the centre of each of `count` output pixels spread over [offset, offset + extent)."""
    step = extent / count
    centres = offset + (np.arange(count, dtype=np.float64) + 0.5) * step
    return np.clip(np.floor(centres + 1e-10).astype(np.int64), 0, limit - 1)


def _overlap(dataset, bounds: Bounds, size: int) -> tuple[tuple[int, int, int, int], Window] | None:
    """The chip pixels (row0, row1, col0, col1) the file covers and the file window (fractional) under them."""
    xmin, ymin, xmax, ymax = bounds
    res_x = (xmax - xmin) / size
    res_y = (ymax - ymin) / size
    left, bottom, right, top = dataset.bounds
    # Overlap in chip pixels (rounded: the chip grid and the file's grid share a lattice for S2 tiles).
    col0 = max(0, round((left - xmin) / res_x))
    col1 = min(size, round((right - xmin) / res_x))
    row0 = max(0, round((ymax - top) / res_y))
    row1 = min(size, round((ymax - bottom) / res_y))
    if col1 <= col0 or row1 <= row0:
        return None
    part = (xmin + col0 * res_x, ymax - row1 * res_y, xmin + col1 * res_x, ymax - row0 * res_y)
    window = from_bounds(*part, transform=dataset.transform)
    # Fractional offsets are kept: GDAL resamples from the exact sub-pixel window.
    return (row0, row1, col0, col1), Window(window.col_off, window.row_off, window.width, window.height)


def _same_grid_family(dataset, epsg: int) -> bool:
    transform = dataset.transform
    north_up = transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0
    return north_up and dataset.crs is not None and dataset.crs == CRS.from_epsg(epsg)


def _read_direct(dataset, indexes: list[int], bounds: Bounds, size: int, resampling: Resampling) -> np.ndarray:
    out = np.full((len(indexes), size, size), np.nan, dtype=np.float32)
    overlap = _overlap(dataset, bounds, size)
    if overlap is None:
        return out
    (row0, row1, col0, col1), window = overlap
    data = dataset.read(
        indexes,
        window=window,
        out_shape=(len(indexes), row1 - row0, col1 - col0),
        resampling=resampling,
        out_dtype=np.float32,
    )
    out[:, row0:row1, col0:col1] = data
    return out


def _read_warped(
    dataset, indexes: list[int], bounds: Bounds, epsg: int, size: int, resampling: Resampling
) -> np.ndarray:
    from affine import Affine

    xmin, _, xmax, ymax = bounds
    res = (xmax - xmin) / size
    transform = Affine(res, 0.0, xmin, 0.0, -res, ymax)
    with WarpedVRT(
        dataset,
        crs=CRS.from_epsg(epsg),
        transform=transform,
        width=size,
        height=size,
        resampling=resampling,
        dtype="float32",
        nodata=np.nan,
        src_nodata=dataset.nodata,
    ) as vrt:
        return vrt.read(indexes, out_dtype=np.float32)


def nodata_to_nan(pixels: np.ndarray, dataset, indexes: list[int], zero_is_nodata: bool = False) -> np.ndarray:
    """Set pixels equal to their band's nodata value (and 0 too if `zero_is_nodata`) to NaN, in place.

    `pixels` [n, H, W] holds bands `indexes` (1-based) of `dataset`; a NaN nodata value needs no change.
    """
    nodatavals = dataset.nodatavals
    for i, band in enumerate(indexes):
        nodata = nodatavals[band - 1] if nodatavals else None
        if nodata is not None and not np.isnan(nodata):
            pixels[i][pixels[i] == np.float32(nodata)] = np.nan
        if zero_is_nodata:
            pixels[i][pixels[i] == 0] = np.nan
    return pixels
