"""Raster layers and extents as the worker needs them: the file behind a layer, and the area to read given
as a bbox plus its CRS (any CRS; the worker reprojects to the area's UTM zone). Used by every algorithm that
reads raster layers over an extent (clay:embed, clay:train)."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsRasterLayer,
    QgsRectangle,
)

from clay_core.errors import ClayInputError
from clay_qgis import compat


def raster_area(
    rasters: list, extent: QgsRectangle | None, crs: QgsCoordinateReferenceSystem | None, context
) -> tuple[tuple[float, float, float, float], str]:
    """The bbox to read and its CRS argument: `extent` as given (any CRS; an invalid CRS means the project's),
    after checking it is not empty and overlaps a raster; without an extent, the rasters' combined extent."""
    for layer in rasters:
        if not layer.crs().isValid():
            raise ClayInputError(
                f"raster layer {layer.name()!r} has no CRS, so it cannot be placed on the "
                "UTM grid: set its CRS (Layer Properties > Source) and run again"
            )
    if extent is not None:
        if crs is None or not crs.isValid():
            crs = context.project().crs() if context.project() else rasters[0].crs()
    else:
        extent, crs = combined_extent(rasters, context), rasters[0].crs()
    if extent.isNull() or extent.isEmpty() or extent.width() <= 0 or extent.height() <= 0:
        raise ClayInputError("the extent is empty: draw an area on the map or choose the layer's extent")
    if not any(overlaps(layer, extent, crs, context) for layer in rasters):
        raise ClayInputError(
            f"the extent ({describe(extent, crs)}) does not overlap any of the raster layers: "
            "zoom to the imagery or choose the layer extent"
        )
    return (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()), crs_argument(crs)


def raster_source(layer) -> str:
    """The file (or /vsi*, s3:// URL) behind a GDAL raster layer; the worker opens it with rasterio."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        raise ClayInputError(
            f"layer {layer.name()!r} is not a file-based raster (provider "
            f"{layer.providerType()}): save it as GeoTIFF first"
        )
    source = layer.source().split("|")[0]
    if source.startswith("/vsis3/"):
        return "s3://" + source[len("/vsis3/") :]
    return source


def combined_extent(rasters: list, context) -> QgsRectangle:
    target = rasters[0].crs()
    extent = compat.null_rectangle()
    for layer in rasters:
        extent.combineExtentWith(to_crs(layer.extent(), layer.crs(), target, context))
    return extent


def to_crs(
    extent: QgsRectangle, source: QgsCoordinateReferenceSystem, target: QgsCoordinateReferenceSystem, context
) -> QgsRectangle:
    if source == target:
        return QgsRectangle(extent)
    transform = QgsCoordinateTransform(source, target, context.transformContext())
    if not transform.isValid():
        raise ClayInputError(
            f"no coordinate transform from {source.authid() or source.description()} to "
            f"{target.authid() or target.description()}: check the layer and project CRS"
        )
    try:
        return transform.transformBoundingBox(extent)
    except QgsCsException as exc:
        raise ClayInputError(
            f"the extent cannot be transformed from {source.authid()} to {target.authid()}: {exc}"
        ) from exc


def overlaps(layer, extent: QgsRectangle, crs: QgsCoordinateReferenceSystem, context) -> bool:
    try:
        return to_crs(extent, crs, layer.crs(), context).intersects(layer.extent())
    except ClayInputError:
        return False


def crs_argument(crs: QgsCoordinateReferenceSystem) -> str:
    """What --bbox-crs gets: the authority id when there is one, else the CRS as WKT (PROJ reads both)."""
    return crs.authid() if crs.authid() else crs.toWkt()


def describe(extent: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> str:
    return f"{extent.toString(3)} in {crs.authid() or crs.description()}"
