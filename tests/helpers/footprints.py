"""Checks that an embeddings file's chips are where its rasters' pixels are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clay_core.parquet import EmbeddingTable, wkb_polygon_rings


def assert_chips_are_pixel_blocks(table: EmbeddingTable, raster: Path, chip: int, epsg: int) -> list[tuple[int, int]]:
    """Every chip's `utm_bbox` is a whole `chip` x `chip` block of `raster`'s pixel grid, and its CRS84 polygon's
    four corners are that box's corners transformed. Returns each chip's (column, row) offset in `raster`."""
    import rasterio
    from pyproj import Transformer

    to_crs84 = Transformer.from_crs(f"EPSG:{epsg}", "OGC:CRS84", always_xy=True)
    offsets = []
    with rasterio.open(raster) as dataset:
        assert dataset.crs.to_epsg() == epsg
        for utm_bbox, wkb in zip(table.table.column("utm_bbox").to_pylist(), table.geometry_wkb, strict=True):
            window = dataset.window(*utm_bbox)
            col, row = round(window.col_off), round(window.row_off)
            assert (window.col_off, window.row_off, window.width, window.height) == pytest.approx(
                (col, row, chip, chip), abs=1e-9
            ), utm_bbox
            xmin, ymin, xmax, ymax = utm_bbox
            lon, lat = to_crs84.transform([xmin, xmax, xmax, xmin], [ymin, ymin, ymax, ymax])
            ring = wkb_polygon_rings(wkb)
            np.testing.assert_allclose(ring[:4, 0], lon, atol=1e-9, rtol=0)
            np.testing.assert_allclose(ring[:4, 1], lat, atol=1e-9, rtol=0)
            offsets.append((col, row))
    return offsets
