"""Patch layout of patch- and group-level embeddings: one place for the (h, w) grid, the per-patch vectors
and the per-patch geometry (numpy only; the QGIS side uses it in-process).

Layout: a chip's row is (h, w, d) at patch level or (g, h, w, d) at group level; patch row 0 is the
chip's north edge and column 0 its west edge. Exploded, a patch keeps its g group vectors together: (g, d).

Geometry rule: the writer (`--explode-patches`) splits the chip's exact UTM footprint (`utm_bbox`, `epsg`)
into patches and transforms each patch corner to CRS84 (pyproj; see parquet.utm_boxes_to_crs84). The QGIS
"patches" view must stay pyproj-free, so `patch_rings_crs84` does the same from the same columns with a
numpy inverse transverse Mercator (WGS 84 UTM zones, Krueger series): it agrees with pyproj within 1e-8
degrees, ~1 mm (tests/core/test_similarity.py). `explode_patch_rings` (bilinear between a chip polygon's four
corners) is only the fallback for files without `utm_bbox`/`epsg` or with non-UTM footprints: measured off
by up to 1.8e-6 degrees for 1.28 km chips and 7.3e-6 (~0.8 m) for 2.56 km chips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clay_core.errors import ClayInputError


def patch_grid_shape(shape_per_row: Sequence[int]) -> tuple[int, int]:
    """(h, w) of the patch grid in a row shaped (h, w, d) or (g, h, w, d)."""
    if len(shape_per_row) == 3:
        return int(shape_per_row[0]), int(shape_per_row[1])
    if len(shape_per_row) == 4:
        return int(shape_per_row[1]), int(shape_per_row[2])
    raise ClayInputError(
        f"rows shaped {tuple(shape_per_row)} have no patch grid: embed with --level patch (or group) to get patches"
    )


def exploded_row_shape(chip_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of one patch's row: (d) from (h, w, d), (g, d) from (g, h, w, d)."""
    patch_grid_shape(chip_shape)
    return (int(chip_shape[-1]),) if len(chip_shape) == 3 else (int(chip_shape[0]), int(chip_shape[-1]))


def per_patch(chips: np.ndarray) -> np.ndarray:
    """[N, h, w, ...] from chips shaped (N, h, w, d) or (N, g, h, w, d) (group: (N, h, w, g, d))."""
    patch_grid_shape(chips.shape[1:])
    return chips if chips.ndim == 4 else np.moveaxis(chips, 1, 3)


def explode_patch_vectors(vectors: np.ndarray, shape_per_row: Sequence[int]) -> np.ndarray:
    """[N * h * w, D'] per-patch vectors, row-major over (chip, patch_row, patch_col), from flat rows [N, D]."""
    vectors = np.asarray(vectors)
    patches = per_patch(vectors.reshape((len(vectors), *shape_per_row)))
    h, w = patches.shape[1], patches.shape[2]
    return patches.reshape(len(vectors) * h * w, -1)


def patch_bounds(chip_bounds: Sequence[float], h: int, w: int) -> np.ndarray:
    """UTM boxes [h, w, 4] (xmin, ymin, xmax, ymax) of a chip's patches, row 0 north, column 0 west."""
    xmin, ymin, xmax, ymax = (float(v) for v in chip_bounds)
    xs = xmin + np.arange(w + 1, dtype=np.float64) * ((xmax - xmin) / w)
    ys = ymax - np.arange(h + 1, dtype=np.float64) * ((ymax - ymin) / h)
    xs[-1], ys[-1] = xmax, ymin  # the last edges exactly, so patches tile the chip without a float gap
    left, right = np.broadcast_to(xs[:-1], (h, w)), np.broadcast_to(xs[1:], (h, w))
    top, bottom = np.broadcast_to(ys[:-1, None], (h, w)), np.broadcast_to(ys[1:, None], (h, w))
    return np.stack([left, bottom, right, top], axis=-1)


# WGS 84 and UTM constants; series in the third flattening n to n^3 (truncation ~1e-11 rad, < 0.1 mm).
_A_AXIS, _FLATTENING, _K0, _FALSE_EASTING, _FALSE_NORTHING_SOUTH = 6378137.0, 1 / 298.257223563, 0.9996, 5e5, 1e7
_N = _FLATTENING / (2 - _FLATTENING)
_RECTIFYING_RADIUS = _A_AXIS / (1 + _N) * (1 + _N**2 / 4 + _N**4 / 64)
_BETA = (_N / 2 - 2 * _N**2 / 3 + 37 * _N**3 / 96, _N**2 / 48 + _N**3 / 15, 17 * _N**3 / 480)
_DELTA = (2 * _N - 2 * _N**2 / 3 - 2 * _N**3, 7 * _N**2 / 3 - 8 * _N**3 / 5, 56 * _N**3 / 15)


def utm_zone_of_epsg(epsg: int) -> tuple[int, bool] | None:
    """(zone, south) of a WGS 84 UTM EPSG code (326zz north, 327zz south), else None."""
    epsg = int(epsg)
    if 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760:
        return epsg % 100, epsg >= 32700
    return None


def krueger_utm_to_lonlat(easting: np.ndarray, northing: np.ndarray, epsg: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse transverse Mercator (Krueger series) for a WGS 84 UTM zone: degrees (lon, lat). The pyproj-free
    twin of `clay_core.grid.utm.utm_to_lonlat`, for the QGIS process."""
    zone = utm_zone_of_epsg(epsg)
    if zone is None:
        raise ClayInputError(f"EPSG:{epsg} is not a WGS 84 UTM zone (326zz/327zz)")
    number, south = zone
    xi = (np.asarray(northing, np.float64) - (_FALSE_NORTHING_SOUTH if south else 0.0)) / (_K0 * _RECTIFYING_RADIUS)
    eta = (np.asarray(easting, np.float64) - _FALSE_EASTING) / (_K0 * _RECTIFYING_RADIUS)
    xi_p, eta_p = xi.copy(), eta.copy()
    for j, beta in enumerate(_BETA, start=1):
        xi_p -= beta * np.sin(2 * j * xi) * np.cosh(2 * j * eta)
        eta_p -= beta * np.cos(2 * j * xi) * np.sinh(2 * j * eta)
    chi = np.arcsin(np.sin(xi_p) / np.cosh(eta_p))
    lat = chi + sum(delta * np.sin(2 * j * chi) for j, delta in enumerate(_DELTA, start=1))
    lon = np.radians(number * 6 - 183) + np.arctan2(np.sinh(eta_p), np.cos(xi_p))
    return np.degrees(lon), np.degrees(lat)


def patch_rings_crs84(utm_bboxes: np.ndarray, epsgs: Sequence[int] | np.ndarray, h: int, w: int) -> np.ndarray:
    """[N * h * w, 5, 2] CRS84 rings of each chip's patches from its `utm_bbox` and `epsg` columns: the writer's
    rule (exact corners, counter-clockwise from south-west) without pyproj. Non-UTM EPSG codes: ClayInputError."""
    utm_bboxes = np.asarray(utm_bboxes, dtype=np.float64).reshape(-1, 4)
    codes = np.asarray(epsgs).reshape(-1)
    boxes = (
        np.stack([patch_bounds(box, h, w).reshape(-1, 4) for box in utm_bboxes])
        if len(utm_bboxes)
        else np.zeros((0, h * w, 4))
    )
    xmin, ymin, xmax, ymax = np.moveaxis(boxes, -1, 0)
    xs = np.stack([xmin, xmax, xmax, xmin, xmin], axis=-1)
    ys = np.stack([ymin, ymin, ymax, ymax, ymin], axis=-1)
    rings = np.empty((*xs.shape, 2))
    for epsg in np.unique(codes):
        chosen = codes == epsg
        rings[chosen, ..., 0], rings[chosen, ..., 1] = krueger_utm_to_lonlat(xs[chosen], ys[chosen], int(epsg))
    return rings.reshape(-1, 5, 2)


def _corners(ring: np.ndarray) -> np.ndarray:
    """[4, 2] corners (north-west, north-east, south-east, south-west) of a chip quadrilateral, found by
    their quadrant around the centre, so they do not depend on the ring's start or winding."""
    corners = ring[:-1] if len(ring) == 5 and np.allclose(ring[0], ring[-1]) else ring
    if len(corners) != 4:
        raise ClayInputError(f"a chip geometry has {len(corners)} corners, expected 4")
    dx, dy = (corners - corners.mean(axis=0)).T
    quadrant = {(False, True): 0, (True, True): 1, (True, False): 2, (False, False): 3}
    ordered = np.full((4, 2), np.nan)
    for corner, east, north in zip(corners, dx > 0, dy > 0, strict=True):
        ordered[quadrant[(bool(east), bool(north))]] = corner
    if np.isnan(ordered).any():
        raise ClayInputError("a chip geometry is not a quadrilateral with one corner per quadrant")
    return ordered


def explode_patch_rings(rings: Sequence[np.ndarray], h: int, w: int) -> np.ndarray:
    """[N * h * w, 5, 2] closed counter-clockwise rings of each chip's h x w patches in CRS84, by bilinear
    interpolation of the chip polygon's corners: the fallback for files without `utm_bbox`/`epsg`; prefer
    `patch_rings_crs84` (see the module docstring for how far apart they are)."""
    u = np.linspace(0.0, 1.0, w + 1)  # west -> east
    v = np.linspace(0.0, 1.0, h + 1)  # north -> south
    out = np.empty((len(rings), h, w, 5, 2))
    for index, ring in enumerate(rings):
        nw, ne, se, sw = _corners(np.asarray(ring, dtype=np.float64))
        north = nw[None, :] + u[:, None] * (ne - nw)[None, :]  # [w+1, 2]
        south = sw[None, :] + u[:, None] * (se - sw)[None, :]
        grid = north[None, :, :] + v[:, None, None] * (south - north)[None, :, :]  # [h+1, w+1, 2]
        # south-west, south-east, north-east, north-west, close: the order parquet.rings_to_wkb writes
        out[index, :, :, 0] = grid[1:, :-1]
        out[index, :, :, 1] = grid[1:, 1:]
        out[index, :, :, 2] = grid[:-1, 1:]
        out[index, :, :, 3] = grid[:-1, :-1]
        out[index, :, :, 4] = grid[1:, :-1]
    return out.reshape(len(rings) * h * w, 5, 2)
