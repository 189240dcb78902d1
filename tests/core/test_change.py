"""clay_core.change: rows matched by footprint (not row order), cosine distances per chip and per patch."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.change import cosine_distance, footprint_keys, match_footprints, per_patch_distance
from clay_core.errors import ClayInputError


def test_rows_are_matched_by_footprint_not_by_order():
    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10]], dtype=np.float64)
    keys_a, kind = footprint_keys(boxes, np.full(3, 32633), None)
    keys_b, _ = footprint_keys(boxes[[2, 0]] + 1e-4, np.full(2, 32633), None)  # reordered, sub-cm noise, one gone
    matched = match_footprints(keys_a, keys_b, kind)
    assert matched.rows_a.tolist() == [0, 2] and matched.rows_b.tolist() == [1, 0]
    assert matched.only_in_a == 1 and matched.only_in_b == 0 and kind == "utm_bbox"
    other_zone, _ = footprint_keys(boxes, np.full(3, 32632), None)
    with pytest.raises(ClayInputError, match="different places"):
        match_footprints(keys_a, other_zone)
    with pytest.raises(ClayInputError, match="share one footprint"):
        match_footprints(keys_a, keys_a + keys_a[:1])


def test_cosine_distance_per_chip_and_per_patch():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 2, 2, 3)).astype(np.float32)  # (h, w, d) per chip
    b = a.copy()
    b[1, 0, 1] = -b[1, 0, 1]  # one patch of chip 1 flipped
    b[3] = 0.0
    rows = np.arange(4)
    chip = cosine_distance(a.reshape(4, -1), b.reshape(4, -1), rows, rows)
    assert chip[0] == pytest.approx(0.0, abs=1e-6) and chip[1] > 0 and np.isnan(chip[3])
    patches = per_patch_distance(a.reshape(4, -1), b.reshape(4, -1), rows, rows, (2, 2, 3))
    assert patches.shape == (4, 2, 2)
    assert patches[1, 0, 1] == pytest.approx(2.0, abs=1e-6)
    changed = np.zeros((4, 2, 2), bool)
    changed[1, 0, 1] = True
    np.testing.assert_allclose(patches[:3][~changed[:3]], 0.0, atol=1e-6)


def _two_dates(tmp_path, level_shape=(4,), explode=False):
    """Two real files of one 2 x 3 chip grid: the second written in another order, one chip missing, chip 4
    flipped (the most changed) and chip 1 halfway turned."""
    import datetime

    from clay_core.parquet import write_geoparquet
    from tests.helpers.embeddings import chip_grid

    rng = np.random.default_rng(3)
    first = rng.standard_normal((6, *level_shape)).astype(np.float32)
    second = first.copy()
    second[4] = -second[4]
    second[1].reshape(-1)[: second[1].size // 2] *= -1
    meta = {"model": "m", "level": "patch" if len(level_shape) == 3 else "mean", "embedding_shape": list(level_shape)}
    a = write_geoparquet(tmp_path / "a.gpq", chip_grid(2, 3), first, meta, explode_patches=explode)
    order = [5, 4, 3, 2, 1]  # reversed, chip 0 missing
    after = chip_grid(2, 3, date=datetime.date(2018, 6, 1))
    b = write_geoparquet(tmp_path / "b.gpq", [after[i] for i in order], second[order], meta, explode_patches=explode)
    return a, b, first, second


def test_compare_writes_a_change_file_most_changed_first(tmp_path):
    import datetime
    import json

    import pyarrow.parquet as pq

    from clay_core.change import compare, write_change
    from clay_core.collection import read_collection

    a, b, first, second = _two_dates(tmp_path)
    result = compare(read_collection([a]), read_collection([b]))
    out = write_change(tmp_path / "change.gpq", result)
    table = pq.read_table(out)
    ids = table.column("chip_id").to_pylist()
    assert len(ids) == 5 and ids[:2] == [
        "33UUU_20170216_001_001",
        "33UUU_20170216_000_001",
    ]  # flipped, then half-turned
    expected = {f"33UUU_20170216_{r:03d}_{c:03d}": 1.0 - _cos(first[3 * r + c], second[3 * r + c]) for r, c in _cells()}
    for chip, value in zip(ids, table.column("change").to_pylist(), strict=True):
        assert value == pytest.approx(expected[chip], abs=1e-6)
    assert set(table.column("date_after").to_pylist()) == {datetime.date(2018, 6, 1)}
    assert set(table.column("date_before").to_pylist()) == {datetime.date(2017, 2, 16)}
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert "covering" not in geo["columns"]["geometry"] and len(geo["columns"]["geometry"]["bbox"]) == 4
    summary = result.summary(shown=2)
    assert summary["rows"] == 5 and summary["matched_chips"] == 5 and summary["matched_by"] == "utm_bbox"
    assert (summary["only_in_before"], summary["only_in_after"]) == (1, 0)
    assert [item["chip_id"] for item in summary["most_changed"]] == ids[:2]
    assert summary["change_max"] == pytest.approx(2.0, abs=1e-6)


def _cells():
    return [(r, c) for r in range(2) for c in range(3) if (r, c) != (0, 0)]


def _cos(u, v):
    u, v = u.reshape(-1).astype(np.float64), v.reshape(-1).astype(np.float64)
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_compare_per_patch_gives_each_patch_its_polygon(tmp_path):
    import pyarrow.parquet as pq

    from clay_core.change import compare, write_change
    from clay_core.collection import read_collection
    from clay_core.wkb import bounds

    a, b, _, _ = _two_dates(tmp_path, level_shape=(2, 2, 3))
    result = compare(read_collection([a]), read_collection([b]), patches=True)
    table = pq.read_table(write_change(tmp_path / "patches.gpq", result))
    assert table.num_rows == 5 * 4
    rows = table.to_pylist()
    flipped = [row for row in rows if row["change"] > 1.999]  # chip 4 whole, chip 1's first two patches
    assert sorted((row["chip_id"], row["patch_row"], row["patch_col"]) for row in flipped) == [
        ("33UUU_20170216_000_001", 0, 0),
        ("33UUU_20170216_000_001", 0, 1),
        ("33UUU_20170216_001_001", 0, 0),
        ("33UUU_20170216_001_001", 0, 1),
        ("33UUU_20170216_001_001", 1, 0),
        ("33UUU_20170216_001_001", 1, 1),
    ]
    assert rows[: len(flipped)] == flipped and all(abs(row["change"]) < 1e-6 for row in rows[len(flipped) :])
    chip_box = bounds([read_collection([a]).table.column("geometry")[4].as_py()])
    patches = np.array([bounds([row["geometry"]]) for row in flipped if row["chip_id"] == "33UUU_20170216_001_001"])
    # the four patches tile their chip: together its box, each a quarter of it
    np.testing.assert_allclose([*patches[:, :2].min(0), *patches[:, 2:].max(0)], chip_box, atol=1e-9)
    np.testing.assert_allclose(patches[:, 2] - patches[:, 0], (chip_box[2] - chip_box[0]) / 2, rtol=0.02)


def test_write_change_keeps_an_existing_file(tmp_path):
    from clay_core.change import compare, write_change
    from clay_core.collection import read_collection

    a, b, _, _ = _two_dates(tmp_path)
    result = compare(read_collection([a]), read_collection([b]))
    out = tmp_path / "change.gpq"
    out.write_bytes(b"keep me")
    with pytest.raises(ClayInputError, match="already exists"):
        write_change(out, result)
    assert out.read_bytes() == b"keep me"
    write_change(out, result, overwrite=True)
    assert out.read_bytes()[:4] == b"PAR1"


def test_compare_refuses_files_of_different_widths(tmp_path):
    from clay_core.change import compare
    from clay_core.collection import read_collection
    from clay_core.parquet import write_geoparquet
    from tests.helpers.embeddings import chip_grid

    a = write_geoparquet(tmp_path / "a.gpq", chip_grid(1, 2), np.ones((2, 4), np.float32), {"model": "m"})
    b = write_geoparquet(tmp_path / "b.gpq", chip_grid(1, 2), np.ones((2, 8), np.float32), {"model": "m"})
    with pytest.raises(ClayInputError, match="4 and 8 values per row"):
        compare(read_collection([a]), read_collection([b]))


def test_most_changed_first_puts_nan_last_and_keeps_ties_in_order():
    from clay_core.change import most_changed_first

    distance = np.array([0.1, np.nan, 0.5, 0.1, 2.0], dtype=np.float32)
    assert most_changed_first(distance).tolist() == [4, 2, 0, 3, 1]


def test_files_without_utm_bbox_are_matched_by_polygon_bounds_and_an_empty_polygon_matches_nothing(tmp_path):
    import struct

    import pyarrow.parquet as pq

    from clay_core.change import collection_footprints
    from clay_core.collection import read_collection
    from clay_core.parquet import write_geoparquet
    from tests.helpers.embeddings import chip_grid

    path = write_geoparquet(tmp_path / "a.gpq", chip_grid(2, 2), np.eye(4, 8, dtype=np.float32), {"model": "m"})
    table = pq.read_table(path).drop_columns(["utm_bbox", "epsg"])  # as other tools write them
    geometry = table.column("geometry").to_pylist()
    geometry[3] = struct.pack("<BII", 1, 3, 0)  # POLYGON EMPTY
    table = table.set_column(table.column_names.index("geometry"), "geometry", [geometry])
    pq.write_table(table, path)
    keys, kind = collection_footprints(read_collection([path]))
    again, _ = collection_footprints(read_collection([path]))  # the same file at the other date
    assert kind != "utm_bbox" and len(keys) == 4
    matched = match_footprints(keys, again, kind)
    assert matched.rows_a.tolist() == [0, 1, 2]  # the three polygons match themselves; the empty one nothing
