"""MGRS tiles <-> UTM zones and extents, and chip grids (size, stride, windows, exact bounds).

Names are loaded on first use: `clay_core.grid.utm` needs only the standard library, and importing it (from
the QGIS plugin, in-process) must not pull in rasterio through `chips`.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "ChipGrid": "chips",
    "snap_bounds": "chips",
    "MgrsTile": "mgrs",
    "parse_tile": "mgrs",
    "tile_at": "mgrs",
    "tile_at_utm": "mgrs",
    "utm_zone": "utm",
    "utm_epsg": "utm",
    "utm_to_lonlat": "utm",
    "lonlat_to_utm": "utm",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
