"""clay_core.parquet_meta: the footer's key-value metadata read without pyarrow equals what pyarrow reads."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clay_core.errors import ClayInputError
from clay_core.parquet import write_geoparquet
from clay_core.parquet_meta import geometry_crs, key_value_metadata, row_shape_of
from clay_core.sources.base import ChipRecord


def chips(n: int) -> list[ChipRecord]:
    return [
        ChipRecord(
            chip_id=f"c{i}",
            source_url=f"/s/{i}.tif",
            date=datetime.date(2021, 6, 1),
            epsg=32633,
            utm_bounds=(300000.0 + 1280 * i, 5898760.0, 301280.0 + 1280 * i, 5900040.0),
            row=0,
            col=i,
            mgrs="33UUU",
            size=128,
            resolution_m=10.0,
        )
        for i in range(n)
    ]


def pyarrow_metadata(path) -> dict[bytes, bytes]:
    return dict(pq.ParquetFile(path).metadata.metadata or {})


@pytest.mark.parametrize(
    ("shape", "explode", "satclip"),
    [((8,), False, False), ((2, 2, 4), False, True), ((2, 2, 4), True, False), ((2, 2, 2, 3), False, False)],
)
def test_footer_metadata_equals_pyarrows(tmp_path, shape, explode, satclip):
    records = chips(5)
    vectors = np.random.default_rng(0).standard_normal((5, *shape)).astype(np.float32)
    path = write_geoparquet(
        tmp_path / "e.gpq",
        records,
        vectors,
        {"model": "m", "level": "patch"},
        explode_patches=explode,
        satclip=np.ones((5, 4)) if satclip else None,
    )
    metadata = key_value_metadata(path)
    assert metadata == pyarrow_metadata(path)
    assert {b"geo", b"clay"} <= set(metadata)


def test_many_row_groups_statistics_and_nested_columns_are_skipped(tmp_path):
    table = pa.table(
        {
            "a": pa.array(range(1000)),
            "b": pa.array([[float(i)] * 3 for i in range(1000)]),
            "s": pa.array([{"x": i, "y": str(i)} for i in range(1000)]),
            "flag": pa.array([i % 2 == 0 for i in range(1000)]),
        }
    )
    table = table.replace_schema_metadata({"k": "v" * 5000, "empty": ""})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=64, compression="zstd")
    assert key_value_metadata(path) == pyarrow_metadata(path)
    assert key_value_metadata(path)[b"k"] == b"v" * 5000


def test_not_a_parquet_file_is_one_clear_error(tmp_path):
    path = tmp_path / "x.gpq"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ClayInputError, match="not a Parquet file"):
        key_value_metadata(path)


def test_row_shape_and_crs_fall_back_safely():
    assert row_shape_of({"row_shape": [2, 2, 4]}, 16) == (2, 2, 4)
    assert row_shape_of({"row_shape": [2, 2, 4]}, 15) == (15,)  # metadata that does not fit: flat
    assert row_shape_of({}, 7) == (7,)
    assert geometry_crs({}) is None
    assert geometry_crs({"primary_column": "geometry", "columns": {"geometry": {}}}) == "OGC:CRS84"
