"""MGRS 100 km squares and the Sentinel-2 tiles laid out on them (WGS84, the "AA" lettering scheme).

A tile id such as ``33UUU`` is: UTM zone 33, latitude band ``U`` (8 degrees), 100 km column letter ``U`` and
row letter ``U``. Column letters repeat every 3 zones (A-H, J-R, S-Z, skipping I and O), row letters every
2,000 km (A-V), shifted by 5 letters in even zones.

A Sentinel-2 tile is 109.8 km on a side: it starts at the 100 km square's north-west corner and extends
9.8 km east and south into the neighbouring squares. Its corner is snapped onto the 60 m lattice that
all tiles of a zone share (counted from easting 0 and from the equator), so that the 10/20/60 m pixels of
neighbouring tiles coincide: e.g. 33UUU starts at (300000, 5900040), 51LYD at (699960, 8400040).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from clay_core.errors import ClayInputError
from clay_core.grid.utm import lonlat_to_utm, utm_epsg, utm_to_lonlat, utm_zone

__all__ = ["MgrsTile", "latitude_band", "parse_tile", "tile_at", "tile_at_utm", "utm_epsg", "utm_zone"]

TILE_SIZE_M = 109_800.0
SQUARE_M = 100_000.0
LATTICE_M = 60.0  # the coarsest Sentinel-2 resolution; every tile corner lies on this lattice
SOUTH_FALSE_NORTHING = 10_000_000.0

LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # 8 degrees each from 80 S; X spans 72..84 N
COLUMN_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
_TILE_RE = re.compile(r"^T?(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


@dataclass(frozen=True)
class MgrsTile:
    zone: int
    band: str  # latitude band letter
    column: str  # 100 km column letter
    row: str  # 100 km row letter
    square_origin: tuple[float, float]  # south-west corner of the 100 km square (easting, northing)

    @property
    def id(self) -> str:
        return f"{self.zone:02d}{self.band}{self.column}{self.row}"

    @property
    def south(self) -> bool:
        return self.band < "N"

    @property
    def epsg(self) -> int:
        return (32700 if self.south else 32600) + self.zone

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """The Sentinel-2 tile's extent (xmin, ymin, xmax, ymax) in its UTM zone."""
        east, north = self.square_origin
        false_northing = SOUTH_FALSE_NORTHING if self.south else 0.0
        xmin = math.floor(east / LATTICE_M) * LATTICE_M
        top = north + SQUARE_M - false_northing
        ymax = math.ceil(top / LATTICE_M) * LATTICE_M + false_northing
        return (xmin, ymax - TILE_SIZE_M, xmin + TILE_SIZE_M, ymax)

    @property
    def origin(self) -> tuple[float, float]:
        """Upper-left corner of the tile: the origin of its pixel and chip grids."""
        xmin, _, _, ymax = self.bounds
        return (xmin, ymax)


def _column_letters(zone: int) -> str:
    return COLUMN_SETS[(zone - 1) % 3]


def _row_offset(zone: int) -> int:
    return 5 if zone % 2 == 0 else 0


@lru_cache(maxsize=256)
def _band_min_northing(zone: int, band: str) -> float:
    """Lowest northing of a latitude band's southern edge within a zone's 6 degrees of longitude.

    A parallel is curved in UTM: north of the equator it dips lowest on the central meridian, south of it
    at the zone's edges (3 degrees either side), so both are tried. Points of the band lie above this.
    """
    lat = -80.0 + 8.0 * LATITUDE_BANDS.index(band)
    epsg = (32700 if band < "N" else 32600) + zone
    central_meridian = zone * 6.0 - 183.0
    lons = [central_meridian - 3.0, central_meridian, central_meridian + 3.0]
    _, northings = lonlat_to_utm(epsg, lons, [lat] * len(lons))
    return float(min(northings))


def parse_tile(tile_id: str) -> MgrsTile:
    """'33UUU' (or 'T33UUU', '33uuu') -> MgrsTile; ClayInputError for anything else."""
    match = _TILE_RE.match(tile_id.strip().upper())
    if not match:
        raise ClayInputError(
            f"{tile_id!r} is not an MGRS tile id: expected zone, latitude band and two 100 km letters, e.g. 33UUU"
        )
    zone, band, column, row = int(match[1]), match[2], match[3], match[4]
    if not 1 <= zone <= 60:
        raise ClayInputError(f"MGRS tile {tile_id!r}: UTM zone {zone} is not in 1..60")
    columns = _column_letters(zone)
    if column not in columns:
        raise ClayInputError(
            f"MGRS tile {tile_id!r}: column letter {column} does not exist in zone {zone} (use one of {columns})"
        )
    easting = SQUARE_M * (columns.index(column) + 1)
    northing = _square_northing(zone, band, row)
    return MgrsTile(zone, band, column, row, (easting, northing))


def _square_northing(zone: int, band: str, row: str) -> float:
    """South edge of the 100 km square: row letters repeat every 2,000 km; the band picks the cycle."""
    base = SQUARE_M * ((ROW_LETTERS.index(row) - _row_offset(zone)) % len(ROW_LETTERS))
    band_floor = _band_min_northing(zone, band)
    northing = base
    # The first square whose top edge lies above the band's lowest northing is the one in this band.
    while northing + SQUARE_M <= band_floor:
        northing += 2_000_000.0
    return northing


def latitude_band(lat: float) -> str:
    if not -80.0 <= lat <= 84.0:
        raise ClayInputError(f"latitude {lat:.4f} is outside the MGRS/UTM range (80 S .. 84 N)")
    return LATITUDE_BANDS[min(int((lat + 80.0) // 8.0), len(LATITUDE_BANDS) - 1)]


def tile_at(lon: float, lat: float, epsg: int | None = None) -> MgrsTile:
    """The MGRS 100 km square (and so the Sentinel-2 tile) holding a point, in its own or a given UTM zone."""
    zone = (epsg % 100) if epsg else utm_zone(lon, lat)
    epsg = epsg or utm_epsg(lon, lat)
    x, y = lonlat_to_utm(epsg, lon, lat)
    column_index = int(x // SQUARE_M) - 1
    if not 0 <= column_index < 8:
        raise ClayInputError(f"({lon:.4f}, {lat:.4f}) is too far from UTM zone {zone} to lie on its MGRS grid")
    column = _column_letters(zone)[column_index]
    row_index = (int((y % 2_000_000.0) // SQUARE_M) + _row_offset(zone)) % len(ROW_LETTERS)
    return parse_tile(f"{zone:02d}{latitude_band(lat)}{column}{ROW_LETTERS[row_index]}")


def tile_at_utm(epsg: int, x: float, y: float) -> MgrsTile:
    """The MGRS tile holding a UTM point of a zone (EPSG 326zz/327zz)."""
    if not (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        raise ClayInputError(f"EPSG:{epsg} is not a WGS84 UTM zone (326zz/327zz): cannot place it on the MGRS grid")
    lon, lat = utm_to_lonlat(epsg, x, y)
    return tile_at(lon, lat, epsg)
