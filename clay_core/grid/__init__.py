"""MGRS tiles <-> UTM zones and extents, and chip grids (size, stride, windows, exact bounds)."""

from clay_core.grid.chips import ChipGrid, snap_bounds
from clay_core.grid.mgrs import MgrsTile, parse_tile, tile_at, tile_at_utm, utm_epsg

__all__ = ["ChipGrid", "MgrsTile", "parse_tile", "snap_bounds", "tile_at", "tile_at_utm", "utm_epsg"]
