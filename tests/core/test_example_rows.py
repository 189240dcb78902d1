"""clay_core.example_rows: chip ids, points and labelled files -> rows of a real embeddings collection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clay_core.collection import read_collection
from clay_core.errors import ClayInputError
from clay_core.example_rows import ExampleFinder
from clay_core.parquet import write_geoparquet
from clay_core.wkb import bounds
from tests.helpers.embeddings import chip_grid


def _collection(tmp_path: Path, *names: str):
    paths = [
        write_geoparquet(tmp_path / name, chip_grid(2, 3), np.eye(6, 4, dtype=np.float32), {"model": "m"})
        for name in names
    ]
    return read_collection(paths)


def _centre(collection, row: int) -> tuple[float, float]:
    west, south, east, north = bounds([collection.geometry_wkb[row]])
    return (west + east) / 2, (south + north) / 2


def test_chip_ids_and_points_give_rows(tmp_path: Path) -> None:
    collection = _collection(tmp_path, "a.gpq")
    finder = ExampleFinder(collection)
    lon, lat = _centre(collection, 4)
    rows = finder.rows(["33UUU_20170216_000_002"], [f"{lon},{lat}"], "positive")
    assert rows == [2, 4]
    assert collection.row_names(rows) == ["33UUU_20170216_000_002", "33UUU_20170216_001_001"]
    with pytest.raises(ClayInputError, match="not inside any chip"):
        finder.rows([], ["0,0"], "negative")
    with pytest.raises(ClayInputError, match="positive point must be LON,LAT"):
        finder.rows([], ["12.5"], "positive")
    with pytest.raises(ClayInputError, match="'nope' is not in the embeddings"):
        finder.rows(["nope"], [], "positive")


def test_an_id_in_two_files_needs_its_file(tmp_path: Path) -> None:
    collection = _collection(tmp_path, "a.gpq", "b.gpq")
    finder = ExampleFinder(collection)
    with pytest.raises(ClayInputError, match="b.gpq:33UUU_20170216_000_001|a.gpq:33UUU_20170216_000_001"):
        finder.rows(["33UUU_20170216_000_001"], [], "positive")
    rows = finder.rows(["b.gpq:33UUU_20170216_000_001"], [], "positive")
    assert rows == [7] and collection.row_names(rows) == ["b.gpq:33UUU_20170216_000_001"]


def test_labelled_points_are_placed_on_their_chips(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import Point

    collection = _collection(tmp_path, "a.gpq")
    places = [_centre(collection, 0), _centre(collection, 5), _centre(collection, 3), (0.0, 0.0)]
    labels = gpd.GeoDataFrame(
        {"class": ["forest", "water", "forest", "forest"]}, geometry=[Point(p) for p in places], crs="EPSG:4326"
    )
    path = tmp_path / "labels.gpkg"
    labels.to_crs("EPSG:3857").to_file(path, driver="GPKG")  # reprojected back to lon/lat on reading
    positives, negatives, outside = ExampleFinder(collection).labelled_rows(path, "class", ["forest"])
    assert (positives, negatives, outside) == ([0, 3], [5], 1)
    with pytest.raises(ClayInputError, match="has no field 'kind'; its fields: class"):
        ExampleFinder(collection).labelled_rows(path, "kind", [])


def test_points_need_chip_polygons(tmp_path: Path) -> None:
    from clay_core.locations import grid_points, write_point_embeddings

    points = grid_points((0.0, 0.0, 2.0, 1.0), 0.5)
    path = write_point_embeddings(tmp_path / "p.gpq", points, np.ones((8, 4), np.float32), {"model": "satclip"})
    with pytest.raises(ClayInputError, match="need chip polygons, but the embeddings hold Point"):
        ExampleFinder(read_collection([path])).rows([], ["0.25,0.75"], "positive")
