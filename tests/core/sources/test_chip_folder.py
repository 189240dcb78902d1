"""Folders and S3 prefixes of Clay chip GeoTIFFs: records, pixels, nodata, bad chips, S3 through moto."""

from __future__ import annotations

import datetime
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from clay_core.errors import ClayInputError
from clay_core.sources import ChipReadError, open_source
from clay_core.sources.chip_folder import ChipFolder
from tests.helpers.chips import CHIP_PX, write_chip


def test_records_come_from_headers(chip_dir: Path) -> None:
    source = open_source(chip_dir)
    assert isinstance(source, ChipFolder)
    records = source.records()
    assert [r.chip_id for r in records] == sorted(p.stem for p in chip_dir.rglob("*.tif"))
    assert source.bands[:3] == ("B02", "B03", "B04") and source.bands[-3:] == ("VH", "VV", "DEM")
    for record in records:
        with rasterio.open(record.source_url) as dataset:
            assert record.utm_bounds == tuple(dataset.bounds)  # exact, straight from the file's grid
            assert record.epsg == 32633 and record.size == CHIP_PX and record.resolution_m == 10.0
            assert record.date == datetime.date.fromisoformat(dataset.tags()["date"])
        assert record.mgrs == "33UUU" and record.row == 3 and record.col in (4, 5)
        lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(*record.center_utm)
        assert record.center_lonlat == pytest.approx((lon, lat), abs=1e-12)


def test_read_gives_the_file_pixels(chip_dir: Path) -> None:
    source = open_source(chip_dir)
    record = source.records()[0]
    data = source.read(record)
    with rasterio.open(record.source_url) as dataset:
        expected = dataset.read()
    assert data.pixels.dtype == np.float32 and data.pixels.shape == (13, CHIP_PX, CHIP_PX)
    np.testing.assert_array_equal(data.pixels, expected)
    assert data.nodata_fraction == 0.0 and data.record == record


def test_b02_zero_is_optical_nodata_and_nan_stays_nan(tmp_path: Path) -> None:
    path = write_chip(tmp_path)
    with rasterio.open(path, "r+") as dataset:
        pixels = dataset.read()
        pixels[0, :16, :] = 0  # no S2 data in the top quarter
        pixels[12, 16:32, :] = np.nan  # no DEM in the second quarter
        dataset.write(pixels)
    source = open_source(tmp_path)
    data = source.read(source.records()[0])
    assert np.isnan(data.pixels[:10, :16]).all() and not np.isnan(data.pixels[10:, :16]).any()
    assert np.isnan(data.pixels[12, 16:32]).all() and not np.isnan(data.pixels[:12, 16:32]).any()
    assert data.nodata_fraction == pytest.approx(0.5)


def test_date_range_and_tile_selection(chip_dir: Path) -> None:
    june = open_source(chip_dir, start="2021-06-01", end="2021-06-30")
    assert {r.date for r in june.records()} == {datetime.date(2021, 6, 1)}
    assert len(open_source(chip_dir, mgrs="33UUU").records()) == 4
    with pytest.raises(ClayInputError, match="no chip GeoTIFFs"):
        open_source(chip_dir, mgrs="27WXN").records()
    with pytest.raises(ClayInputError, match="after end"):
        open_source(chip_dir, start="2021-08-01", end="2021-07-01")


def _bad_chips(folder: Path) -> dict[str, str]:
    """name -> expected words of the error message."""
    good = write_chip(folder, counter=10)
    truncated = folder / "claytile_33UUU_20210601_v02_0011.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "claytile_33UUU_20210601_v02_0012.tif").write_bytes(b"this is not a GeoTIFF" * 10)
    write_chip(folder, counter=13, bands=10, col=1)
    write_chip(folder, counter=14, crs=False, col=2)
    write_chip(folder, counter=15, date_tag="2019-01-01", col=3)
    return {
        "0011": "corrupt or truncated",
        "0012": "corrupt or truncated",
        "0013": "10 bands",
        "0014": "no CRS",
        "0015": "outside the requested range",
    }


def test_bad_chips_raise_clear_errors_and_the_rest_reads(tmp_path: Path) -> None:
    expected = _bad_chips(tmp_path)
    source = open_source(tmp_path, start="2021-01-01", end="2021-12-31")
    records = source.records()
    assert len(records) == 6
    good = 0
    for record in records:
        counter = record.chip_id[-4:]
        if counter in expected:
            with pytest.raises(ChipReadError, match=expected[counter]) as error:
                source.read(record)
            assert record.source_url in str(error.value) and "\n" not in str(error.value)
        else:
            assert source.read(record).pixels.shape == (13, CHIP_PX, CHIP_PX)
            good += 1
    assert good == 1


def test_pickled_source_reads_in_another_process_state(chip_dir: Path) -> None:
    source = open_source(chip_dir)
    records = source.records()
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone.read(records[1]).pixels, source.read(records[1]).pixels)


def test_s3_prefix_through_moto(chip_dir: Path, s3_bucket) -> None:
    url = s3_bucket.upload_dir(chip_dir, "02/33UUU")
    local = open_source(chip_dir)
    for no_sign_request in (False, True):
        remote = open_source(url + "/", no_sign_request=no_sign_request)
        assert isinstance(remote, ChipFolder)
        records = remote.records()
        assert [r.chip_id for r in records] == [r.chip_id for r in local.records()]
        assert all(r.source_url.startswith(f"s3://{s3_bucket.name}/02/33UUU/") for r in records)
        assert [r.utm_bounds for r in records] == [r.utm_bounds for r in local.records()]
        np.testing.assert_array_equal(remote.read(records[2]).pixels, local.read(local.records()[2]).pixels)


def test_s3_bad_chip_and_missing_prefix(tmp_path: Path, s3_bucket) -> None:
    write_chip(tmp_path, counter=0)
    (tmp_path / "claytile_33UUU_20210601_v02_0001.tif").write_bytes(b"garbage" * 50)
    url = s3_bucket.upload_dir(tmp_path, "chips")
    source = open_source(url)
    records = source.records()
    assert source.read(records[0]).nodata_fraction == 0.0
    with pytest.raises(ChipReadError, match="corrupt or truncated"):
        source.read(records[1])
    with pytest.raises(ClayInputError):
        open_source(s3_bucket.url("nothing-here")).records()
