"""UTM zones of WGS84 points (with the Norway and Svalbard exceptions) and cached UTM <-> lon/lat transforms.

`utm_zone`/`utm_epsg` need only the standard library, so the QGIS plugin can import this module
in-process (QGIS's Python may lack rasterio). pyproj is imported only when a transform is asked for.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pyproj is imported only when a transform is asked for
    from pyproj import Transformer

# Svalbard (band X, 72..84 N): zones 32, 34 and 36 are not used; 31, 33, 35 and 37 are widened to cover
# 0-9, 9-21, 21-33 and 33-42 E (west edges listed; each zone runs to the next edge).
_SVALBARD_WEST_EDGES = ((33.0, 37), (21.0, 35), (9.0, 33), (0.0, 31))


def utm_zone(lon: float, lat: float) -> int:
    """UTM zone number (1..60) of a point, including the Norway (32V) and Svalbard (31X..37X) exceptions."""
    lon = (lon + 180.0) % 360.0 - 180.0  # 180 E is -180: zone 1
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        return 32  # south-western Norway: zone 32 widened west to 3 E, 31V shrinks to 0..3 E
    if 72.0 <= lat <= 84.0 and 0.0 <= lon < 42.0:
        return next(svalbard for west, svalbard in _SVALBARD_WEST_EDGES if lon >= west)
    return zone


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code (326zz north, 327zz south) of the WGS84 UTM zone holding a point."""
    return (32600 if lat >= 0 else 32700) + utm_zone(lon, lat)


def utm_to_lonlat(epsg: int, x: Any, y: Any) -> tuple[Any, Any]:
    """UTM (or any projected EPSG) coordinates -> (lon, lat) degrees; numbers or arrays, as given."""
    return _transformer(int(epsg), 4326).transform(x, y)


def lonlat_to_utm(epsg: int, lon: Any, lat: Any) -> tuple[Any, Any]:
    """(lon, lat) degrees -> coordinates in EPSG:epsg; numbers or arrays, as given."""
    return _transformer(4326, int(epsg)).transform(lon, lat)


@lru_cache(maxsize=128)
def _transformer(source: int, target: int) -> Transformer:
    # Building a Transformer costs ~1 ms (a PROJ database look-up): build each pair once per process.
    from pyproj import Transformer

    return Transformer.from_crs(source, target, always_xy=True)
