"""A regular grid of square chips over a north-up UTM extent: chip size, stride (overlap) and exact bounds.

The grid's origin is the extent's upper-left corner, so chips computed from the same origin line up across
scenes (for Sentinel-2: the MGRS tile origin). Chip (row, col) starts `stride` pixels after (row, col - 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from affine import Affine
from rasterio.windows import Window

from clay_core.errors import ClayInputError

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class ChipGrid:
    bounds: Bounds  # xmin, ymin, xmax, ymax of the extent the grid covers
    resolution_m: float
    chip_size: int  # pixels per side
    stride: int | None = None  # pixels between chip starts; None = chip_size (no overlap)
    partial: bool = False  # also keep chips that stick out of the extent's right/bottom edge

    def __post_init__(self) -> None:
        if self.chip_size <= 0:
            raise ClayInputError(f"chip size must be a positive number of pixels, got {self.chip_size}")
        if self.step <= 0:
            raise ClayInputError(f"stride must be a positive number of pixels, got {self.stride}")
        if self.resolution_m <= 0:
            raise ClayInputError(f"resolution must be positive, got {self.resolution_m}")
        xmin, ymin, xmax, ymax = self.bounds
        if not (xmax > xmin and ymax > ymin):
            raise ClayInputError(f"empty extent {self.bounds}: xmax must exceed xmin and ymax exceed ymin")

    @property
    def step(self) -> int:
        return self.stride if self.stride is not None else self.chip_size

    @property
    def origin(self) -> tuple[float, float]:
        return (self.bounds[0], self.bounds[3])

    @property
    def transform(self) -> Affine:
        """Pixel grid of the whole extent (north up)."""
        x0, y0 = self.origin
        return Affine(self.resolution_m, 0.0, x0, 0.0, -self.resolution_m, y0)

    @property
    def width_px(self) -> int:
        return round((self.bounds[2] - self.bounds[0]) / self.resolution_m)

    @property
    def height_px(self) -> int:
        return round((self.bounds[3] - self.bounds[1]) / self.resolution_m)

    def _count(self, extent_px: int) -> int:
        if extent_px < self.chip_size:
            return 1 if self.partial else 0
        full = (extent_px - self.chip_size) // self.step + 1
        # One more (sticking out) chip when pixels are left after the last full one and the next chip would
        # start inside the extent; with a stride larger than the chip it can start past the edge, empty.
        uncovered = (full - 1) * self.step + self.chip_size < extent_px
        if self.partial and uncovered and full * self.step < extent_px:
            full += 1
        return full

    @property
    def rows(self) -> int:
        return self._count(self.height_px)

    @property
    def cols(self) -> int:
        return self._count(self.width_px)

    def __len__(self) -> int:
        return self.rows * self.cols

    def window(self, row: int, col: int) -> Window:
        """The chip's pixel window in the grid's `transform`."""
        return Window(col * self.step, row * self.step, self.chip_size, self.chip_size)

    def chip_bounds(self, row: int, col: int) -> Bounds:
        x0, y0 = self.origin
        span = self.chip_size * self.resolution_m
        xmin = x0 + col * self.step * self.resolution_m
        ymax = y0 - row * self.step * self.resolution_m
        return (xmin, ymax - span, xmin + span, ymax)

    def chip_transform(self, row: int, col: int) -> Affine:
        xmin, _, _, ymax = self.chip_bounds(row, col)
        return Affine(self.resolution_m, 0.0, xmin, 0.0, -self.resolution_m, ymax)

    def cells(self) -> Iterator[tuple[int, int]]:
        for row in range(self.rows):
            for col in range(self.cols):
                yield row, col

    def cells_intersecting(self, bounds: Bounds) -> Iterator[tuple[int, int]]:
        """Chips whose footprint overlaps `bounds` (touching edges do not count), row-major."""
        bxmin, bymin, bxmax, bymax = bounds
        x0, y0 = self.origin
        step_m = self.step * self.resolution_m
        span = self.chip_size * self.resolution_m
        # Only the rows/cols whose start lies within reach of `bounds`: no scan of the whole grid.
        first_col = max(0, math.floor((bxmin - x0 - span) / step_m))
        last_col = min(self.cols - 1, math.ceil((bxmax - x0) / step_m))
        first_row = max(0, math.floor((y0 - bymax - span) / step_m))
        last_row = min(self.rows - 1, math.ceil((y0 - bymin) / step_m))
        for row in range(first_row, last_row + 1):
            for col in range(first_col, last_col + 1):
                cxmin, cymin, cxmax, cymax = self.chip_bounds(row, col)
                if cxmin < bxmax and cxmax > bxmin and cymin < bymax and cymax > bymin:
                    yield row, col


def snap_bounds(bounds: Bounds, resolution_m: float) -> Bounds:
    """Grow bounds outwards onto the resolution lattice (so pixel edges fall on multiples of it)."""
    xmin, ymin, xmax, ymax = bounds
    r = resolution_m
    return (math.floor(xmin / r) * r, math.floor(ymin / r) * r, math.ceil(xmax / r) * r, math.ceil(ymax / r) * r)
