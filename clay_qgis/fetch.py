"""Pixels of any raster layer QGIS can draw (WMS, XYZ tiles, WCS, database rasters ...) as a temporary GeoTIFF
that the worker reads like any other raster file.

The layer is read in-process through its own data provider (QGIS does the tile requests, authentication and
caching), reprojected by QGIS to the UTM zone of the area's centre at the chosen resolution, block by block,
and written with GDAL. The worker is then given that UTM extent, so it chips the file on the same grid.

Web imagery (the wms provider's ARGB32 images) becomes three float bands named red, green, blue. Its 8-bit
values are taken as a true-colour rendering in ESA's Sentinel-2 L2A TCI convention (255 = reflectance 0.2,
i.e. DN 2000) and scaled back to reflectance DN, the units the Sentinel-2 L2A normalisation of Clay v1.5
expects; transparent pixels become nodata (NaN). Other providers keep their values and band numbers.
The layer's source, credentials removed, goes into the file as clay_core.provenance.SOURCE_TAG: the worker
writes it as the embeddings' source_url in place of the temporary file's path.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsRasterBlockFeedback,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRasterProjector,
    QgsRectangle,
)

from clay_core.errors import ClayInputError
from clay_core.grid.utm import utm_epsg
from clay_core.provenance import SOURCE_TAG, strip_credentials
from clay_qgis.algorithms.rasters import to_crs

DEFAULT_RESOLUTION_M = 10.0
# A fetch larger than this (pixels per band) is refused: at 10 m it is a 60 x 60 km area, minutes of tile
# requests and ~600 MB of float pixels on disk for three bands.
MAX_FETCH_PIXELS = 36_000_000
BLOCK_PIXELS = 1024  # rows/columns fetched per provider request: progress and cancel between blocks
TCI_SATURATION_DN = 2000.0  # Sentinel-2 L2A TCI: 8-bit 255 <-> DN 2000 (reflectance 0.2)
RGB_BANDS = ("red", "green", "blue")
IMAGE_TYPES = (Qgis.DataType.ARGB32, Qgis.DataType.ARGB32_Premultiplied)
NUMPY_TYPES = {
    Qgis.DataType.Byte: np.uint8,
    Qgis.DataType.UInt16: np.uint16,
    Qgis.DataType.Int16: np.int16,
    Qgis.DataType.UInt32: np.uint32,
    Qgis.DataType.Int32: np.int32,
    Qgis.DataType.Float32: np.float32,
    Qgis.DataType.Float64: np.float64,
}


def needs_fetch(layer) -> bool:
    """True for a raster the worker cannot open as a file: anything not read by QGIS's gdal provider."""
    return isinstance(layer, QgsRasterLayer) and layer.providerType() != "gdal"


def is_rgb_image(layer) -> bool:
    """Web imagery: the provider hands out rendered colour images (ARGB32), not measurement bands."""
    provider = layer.dataProvider()
    return provider is not None and provider.dataType(1) in IMAGE_TYPES


@dataclass(frozen=True)
class FetchPlan:
    """Where and how finely a layer is read: a north-up UTM grid of cols x rows pixels of resolution_m."""

    layer: QgsRasterLayer
    epsg: int
    extent: QgsRectangle  # in EPSG:epsg, on the resolution lattice
    resolution_m: float
    cols: int
    rows: int

    @property
    def crs(self) -> QgsCoordinateReferenceSystem:
        return QgsCoordinateReferenceSystem(f"EPSG:{self.epsg}")

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        e = self.extent
        return e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()

    def describe(self) -> str:
        return f"{self.layer.name()!r} at {self.resolution_m:g} m: {self.cols} x {self.rows} pixels in EPSG:{self.epsg}"


def has_pixel_grid(layer) -> bool:
    """A fixed grid of pixels (files, WCS, database rasters), unlike tiled web imagery (WMS, XYZ), which has
    a resolution per zoom level and, for XYZ, the whole world as its extent."""
    provider = layer.dataProvider()
    return provider is not None and provider.xSize() > 0 and not layer.extent().isEmpty()


def native_resolution_m(layer, context) -> float | None:
    """Metres per pixel of a layer with a fixed pixel grid; None for tiled web imagery (or when unknown)."""
    if not has_pixel_grid(layer):
        return None
    try:
        centre = to_crs(layer.extent(), layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), context).center()
        utm = QgsCoordinateReferenceSystem(f"EPSG:{utm_epsg(centre.x(), centre.y())}")
        width_m = to_crs(layer.extent(), layer.crs(), utm, context).width()
    except ClayInputError:
        return None
    return width_m / layer.dataProvider().xSize() if width_m > 0 else None


def choose_resolution(layers: list, requested: float | None, context) -> float:
    """The resolution asked for; else the first layer's own (a fixed pixel grid); else 10 m."""
    if requested:
        return requested
    native = (native_resolution_m(layer, context) for layer in layers)
    return next((value for value in native if value), DEFAULT_RESOLUTION_M)


def plan_fetch(layer, extent: QgsRectangle, crs: QgsCoordinateReferenceSystem, resolution: float, context) -> FetchPlan:
    """The north-up grid of `resolution` metres over `extent` (in `crs`) in the UTM zone of its centre."""
    centre = to_crs(extent, crs, QgsCoordinateReferenceSystem("EPSG:4326"), context).center()
    epsg = utm_epsg(centre.x(), centre.y())
    area = to_crs(extent, crs, QgsCoordinateReferenceSystem(f"EPSG:{epsg}"), context)
    xmin, ymin = math.floor(area.xMinimum() / resolution), math.floor(area.yMinimum() / resolution)
    xmax, ymax = math.ceil(area.xMaximum() / resolution), math.ceil(area.yMaximum() / resolution)
    cols, rows = xmax - xmin, ymax - ymin
    snapped = QgsRectangle(xmin * resolution, ymin * resolution, xmax * resolution, ymax * resolution)
    plan = FetchPlan(layer, epsg, snapped, resolution, cols, rows)
    if cols * rows > MAX_FETCH_PIXELS:
        raise ClayInputError(
            f"fetching {plan.describe()} is {cols * rows / 1e6:.0f} M pixels, more than the "
            f"{MAX_FETCH_PIXELS / 1e6:.0f} M allowed: draw a smaller extent or set a coarser Resolution "
            "(more metres per pixel)"
        )
    return plan


def fetch_to_geotiff(plan: FetchPlan, path: Path, feedback=None) -> Path:
    """Read the plan's grid from the layer into the GeoTIFF `path`; a failed or cancelled fetch leaves no file."""
    try:
        _write(plan, path, feedback)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _write(plan: FetchPlan, path: Path, feedback) -> None:
    layer = plan.layer
    image = is_rgb_image(layer)
    names = RGB_BANDS if image else tuple(layer.bandName(i) for i in range(1, layer.bandCount() + 1))
    dataset = _create(plan, path, names, image)
    pipe = _pipe(plan)
    block_feedback = QgsRasterBlockFeedback()  # lets Cancel stop a provider request that is under way
    if feedback is not None:
        feedback.canceled.connect(block_feedback.cancel)
    valid = 0
    try:
        windows = list(_windows(plan))
        for done, (col, row, width, height) in enumerate(windows):
            _stop_if_cancelled(feedback, block_feedback)
            extent = QgsRectangle(
                plan.extent.xMinimum() + col * plan.resolution_m,
                plan.extent.yMaximum() - (row + height) * plan.resolution_m,
                plan.extent.xMinimum() + (col + width) * plan.resolution_m,
                plan.extent.yMaximum() - row * plan.resolution_m,
            )
            planes = (
                _rgb_planes(pipe, extent, width, height, block_feedback)
                if image
                else _band_planes(pipe, extent, width, height, len(names), block_feedback)
            )
            _stop_if_cancelled(feedback, block_feedback)  # a cancelled request returns an empty block
            for index, plane in enumerate(planes, start=1):
                dataset.GetRasterBand(index).WriteArray(plane, col, row)
            valid += int(np.isfinite(planes[0]).sum())
            if feedback is not None:
                feedback.setProgress(100.0 * (done + 1) / len(windows))
    finally:
        if feedback is not None:
            feedback.canceled.disconnect(block_feedback.cancel)
        dataset.FlushCache()
        dataset = None  # closes the file (Windows cannot remove an open one)
    if valid == 0:
        raise ClayInputError(
            f"layer {layer.name()!r} gave no pixels over the extent (its server failed or has no imagery "
            "there): check that the layer draws on the map at this extent and run again"
        )


def _create(plan: FetchPlan, path: Path, names: tuple[str, ...], image: bool):
    """An empty float32 GeoTIFF on the plan's grid, NaN = nodata, bands described (the worker maps bands
    by description: red/green/blue -> B04/B03/B02)."""
    from osgeo import gdal, osr

    driver = gdal.GetDriverByName("GTiff")
    dataset = driver.Create(
        str(path),
        plan.cols,
        plan.rows,
        len(names),
        gdal.GDT_Float32,
        ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"],
    )
    if dataset is None:
        raise ClayInputError(f"cannot write a temporary raster in {path.parent}: check the free disk space")
    dataset.SetGeoTransform(
        (plan.extent.xMinimum(), plan.resolution_m, 0.0, plan.extent.yMaximum(), 0.0, -plan.resolution_m)
    )
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(plan.epsg)
    dataset.SetProjection(srs.ExportToWkt())
    dataset.SetMetadataItem("CLAY_FETCHED_FROM", plan.layer.name())
    # The output's source_url: the layer's own source (the file is temporary), never its credentials.
    dataset.SetMetadataItem(SOURCE_TAG, layer_source(plan.layer))
    colours = (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)
    for index, name in enumerate(names, start=1):
        band = dataset.GetRasterBand(index)
        band.SetDescription(name)
        band.SetNoDataValue(float("nan"))
        if image:
            band.SetColorInterpretation(colours[index - 1])
    return dataset


def layer_source(layer) -> str:
    """The layer's data source string (WMS/XYZ/WCS URI, database connection) without credentials: what the
    embeddings name as their source_url."""
    return strip_credentials(layer.source())


def _pipe(plan: FetchPlan) -> QgsRasterPipe:
    pipe = QgsRasterPipe()
    pipe.set(plan.layer.dataProvider().clone())
    if plan.layer.crs() != plan.crs:
        projector = QgsRasterProjector()
        projector.setCrs(plan.layer.crs(), plan.crs, plan.layer.transformContext())
        pipe.insert(1, projector)
    return pipe


def _windows(plan: FetchPlan):
    for row in range(0, plan.rows, BLOCK_PIXELS):
        for col in range(0, plan.cols, BLOCK_PIXELS):
            yield col, row, min(BLOCK_PIXELS, plan.cols - col), min(BLOCK_PIXELS, plan.rows - row)


def _stop_if_cancelled(*feedbacks) -> None:
    # Both: Cancel reaches the block feedback through a signal, which may be queued across threads.
    if any(feedback is not None and feedback.isCanceled() for feedback in feedbacks):
        raise ClayInputError("cancelled while fetching the layer's pixels")


def _block(pipe: QgsRasterPipe, band: int, extent: QgsRectangle, width: int, height: int, feedback):
    block = pipe.last().block(band, extent, width, height, feedback)
    _stop_if_cancelled(feedback)
    if block is None or not block.isValid():
        raise ClayInputError(
            f"the layer's provider returned no data for {extent.toString(1)}: check that the "
            "layer draws on the map and run again"
        )
    return block


def _rgb_planes(pipe, extent, width: int, height: int, feedback) -> list[np.ndarray]:
    """Red, green, blue as reflectance DN (TCI convention), NaN where transparent."""
    block = _block(pipe, 1, extent, width, height, feedback)
    argb = np.frombuffer(bytes(block.data()), dtype=np.uint32).reshape(height, width)
    alpha = (argb >> 24).astype(np.float32)
    planes = []
    for shift in (16, 8, 0):
        value = ((argb >> shift) & 0xFF).astype(np.float32)
        if block.dataType() == Qgis.DataType.ARGB32_Premultiplied:
            value = np.divide(value * 255.0, alpha, out=np.zeros_like(value), where=alpha > 0)
        value = np.where(alpha > 0, value * (TCI_SATURATION_DN / 255.0), np.nan)
        planes.append(value.astype(np.float32))
    return planes


def _band_planes(pipe, extent, width: int, height: int, count: int, feedback) -> list[np.ndarray]:
    planes = []
    for band in range(1, count + 1):
        block = _block(pipe, band, extent, width, height, feedback)
        dtype = NUMPY_TYPES.get(block.dataType())
        if dtype is None:
            raise ClayInputError(
                f"band {band} of the layer has data type {block.dataType()}, which cannot be "
                "embedded: save the layer as GeoTIFF (Export > Save As, raw data) first"
            )
        values = np.frombuffer(bytes(block.data()), dtype=dtype).reshape(height, width).astype(np.float32)
        if block.hasNoDataValue():
            values[values == np.float32(block.noDataValue())] = np.nan
        planes.append(values)
    return planes


class FetchFolder:
    """A temporary folder for fetched rasters, removed on exit whatever happened (success, error, cancel)."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="clay-fetch-"))
        return self.path

    def __exit__(self, *exc_info) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
