"""GeoParquet output: v0 columns, geometry round trip, validator, geopandas and the read-back contract."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import pytest

from clay_core.errors import ClayInputError
from clay_core.parquet import (
    output_name,
    read_embeddings,
    read_metadata,
    wkb_polygon_rings,
    write_geoparquet,
)
from clay_core.patches import patch_bounds


@dataclass(frozen=True)
class Chip:
    """The fields the writer reads from a ChipRecord (the protocol `ChipLike`)."""

    chip_id: str
    source_url: str
    date: datetime.date
    epsg: int
    utm_bounds: tuple[float, float, float, float]
    row: int
    col: int
    mgrs: str | None


def chips_33uuu(n: int = 3, size_m: float = 1280.0) -> list[Chip]:
    """Chips on the 33UUU grid (EPSG:32633), top-left at the tile's corner (300000, 5900040)."""
    chips = []
    for i in range(n):
        row, col = divmod(i, 2)
        xmin = 300000.0 + col * size_m
        ymax = 5900040.0 - row * size_m
        chips.append(
            Chip(
                f"33UUU_20170216_{row:03d}_{col:03d}",
                f"/data/scene_{i}.tif",
                datetime.date(2017, 2, 16 + i),
                32633,
                (xmin, ymax - size_m, xmin + size_m, ymax),
                row,
                col,
                "33UUU",
            )
        )
    return chips


META = {"model": "test-model", "family": "clay-v0", "level": "patch", "bands": ["B02", "B03"]}


def test_v0_columns_types_and_metadata(tmp_path):
    chips = chips_33uuu(3)
    embeddings = np.random.default_rng(0).standard_normal((3, 4, 4, 8)).astype(np.float32)
    out = write_geoparquet(
        tmp_path / "e.gpq",
        chips,
        embeddings,
        {**META, "embedding_shape": [4, 4, 8]},
        nodata_fractions=[0.0, 0.1, 0.25],
        filled_bands=["VH", "VV", "DEM"],
    )
    schema = pq.read_schema(out)
    assert schema.names[:4] == ["source_url", "date", "embeddings", "geometry"]
    assert str(schema.field("source_url").type) == "string"
    assert str(schema.field("date").type) == "date32[day]"
    assert str(schema.field("embeddings").type) == "fixed_size_list<element: float>[128]"
    assert str(schema.field("utm_bbox").type) == "fixed_size_list<element: double>[4]"
    for name in ("chip_id", "mgrs", "epsg", "row", "col", "nodata_fraction", "filled_bands"):
        assert name in schema.names
    geo = json.loads(schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    clay = read_metadata(out)
    assert clay["model"] == "test-model" and clay["row_shape"] == [4, 4, 8] and clay["clay_core_version"]
    assert pq.ParquetFile(out).metadata.row_group(0).column(2).compression == "ZSTD"
    table = pq.read_table(out)
    assert table.column("filled_bands").to_pylist()[1] == ["VH", "VV", "DEM"]
    assert table.column("nodata_fraction").to_pylist()[2] == pytest.approx(0.25)
    assert table.column("date").to_pylist()[1] == datetime.date(2017, 2, 17)


def test_geometry_round_trips_to_utm_corners(tmp_path):
    from pyproj import Transformer

    chips = chips_33uuu(4)
    out = write_geoparquet(tmp_path / "e.gpq", chips, np.zeros((4, 16), np.float32), META)
    table = pq.read_table(out)
    to_crs84 = Transformer.from_crs("EPSG:32633", "OGC:CRS84", always_xy=True)
    to_utm = Transformer.from_crs("OGC:CRS84", "EPSG:32633", always_xy=True)
    bbox = json.loads(pq.read_schema(out).metadata[b"geo"])["columns"]["geometry"]["bbox"]
    for chip, wkb, utm_bbox in zip(
        chips, table.column("geometry").to_pylist(), table.column("utm_bbox").to_pylist(), strict=True
    ):
        assert tuple(utm_bbox) == chip.utm_bounds  # native footprint stored exactly
        ring = wkb_polygon_rings(wkb)
        assert ring.shape == (5, 2) and np.array_equal(ring[0], ring[-1])
        xmin, ymin, xmax, ymax = chip.utm_bounds
        corners = np.array([(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax)])
        lon, lat = to_crs84.transform(corners[:, 0], corners[:, 1])
        np.testing.assert_allclose(ring[:4, 0], lon, atol=1e-9, rtol=0)
        np.testing.assert_allclose(ring[:4, 1], lat, atol=1e-9, rtol=0)
        assert 12.0 < lon.min() < 13.0 and 53.0 < lat.min() < 53.3  # 33UUU's north-west corner area
        back_x, back_y = to_utm.transform(ring[:4, 0], ring[:4, 1])
        np.testing.assert_allclose(back_x, corners[:, 0], atol=1e-3)
        np.testing.assert_allclose(back_y, corners[:, 1], atol=1e-3)
        assert bbox[0] <= ring[:, 0].min() and ring[:, 0].max() <= bbox[2]
        row_box = table.column("bbox")[chips.index(chip)].as_py()  # the 1.1 covering column
        assert row_box == {
            "xmin": ring[:, 0].min(),
            "ymin": ring[:, 1].min(),
            "xmax": ring[:, 0].max(),
            "ymax": ring[:, 1].max(),
        }
        assert bbox[1] <= ring[:, 1].min() and ring[:, 1].max() <= bbox[3]


def test_passes_geoparquet_validator_and_geopandas(tmp_path):
    geoparquet_validator = pytest.importorskip("geoparquet_validator")
    geopandas = pytest.importorskip("geopandas")
    chips = chips_33uuu(3)
    out = write_geoparquet(
        tmp_path / "e.gpq", chips, np.ones((3, 2, 2, 4), np.float32), {**META, "embedding_shape": [2, 2, 4]}
    )
    report = geoparquet_validator.check(str(out))
    assert geoparquet_validator.failed(report) == [], report
    frame = geopandas.read_parquet(out)
    assert frame.crs.to_string() == "OGC:CRS84"
    assert len(frame) == 3 and frame.geometry.geom_type.unique().tolist() == ["Polygon"]
    assert frame.geometry.is_valid.all()
    lon, lat = frame.geometry.iloc[0].centroid.xy
    assert 12.0 < lon[0] < 13.0 and 53.0 < lat[0] < 53.3


def test_v0_read_back_contract_pandas_flat_float32(tmp_path):
    """Clay's test: pandas gives flat float32 arrays that reshape to (h, w, d) for patch level."""
    chips = chips_33uuu(2)
    embeddings = np.random.default_rng(1).standard_normal((2, 4, 4, 8)).astype(np.float32)
    out = write_geoparquet(tmp_path / "e.gpq", chips, embeddings, {**META, "embedding_shape": [4, 4, 8]})
    frame = pq.read_table(out).to_pandas()
    assert list(frame.columns[:4]) == ["source_url", "date", "embeddings", "geometry"]
    first = frame["embeddings"].iloc[1]
    assert first.dtype == np.float32 and first.shape == (128,)
    np.testing.assert_array_equal(first.reshape(4, 4, 8), embeddings[1])


def test_read_embeddings(tmp_path):
    chips = chips_33uuu(3)
    embeddings = np.random.default_rng(2).standard_normal((3, 2, 4, 4, 8)).astype(np.float32)
    out = write_geoparquet(tmp_path / "e.gpq", chips, embeddings, {**META, "level": "group"})
    result = read_embeddings(out)
    assert result.vectors.shape == (3, 256) and result.vectors.dtype == np.float32
    assert result.shape_per_row == (2, 4, 4, 8)
    np.testing.assert_array_equal(result.reshaped(), embeddings)
    assert "embeddings" not in result.table.column_names
    assert result.chip_ids == [c.chip_id for c in chips]
    assert result.metadata["level"] == "group"
    assert result.crs["id"]["code"] == "CRS84"
    assert len(result.geometry_wkb) == 3 and wkb_polygon_rings(result.geometry_wkb[0]).shape == (5, 2)


def test_exploded_patches_have_their_own_polygons(tmp_path):
    from pyproj import Transformer

    chips = chips_33uuu(2, size_m=1280.0)
    h, w, d = 4, 4, 3  # 4x4 patches of 320 m (32 px x 10 m) in a 1280 m chip
    embeddings = np.arange(2 * h * w * d, dtype=np.float32).reshape(2, h, w, d)
    out = write_geoparquet(
        tmp_path / "p.gpq", chips, embeddings, {**META, "embedding_shape": [h, w, d]}, explode_patches=True
    )
    result = read_embeddings(out)
    assert len(result) == 2 * h * w and result.shape_per_row == (d,)
    table = result.table
    rows, cols = table.column("patch_row").to_pylist(), table.column("patch_col").to_pylist()
    to_utm = Transformer.from_crs("OGC:CRS84", "EPSG:32633", always_xy=True)
    for i in range(len(result)):
        chip = chips[i // (h * w)]
        r, c = rows[i], cols[i]
        np.testing.assert_array_equal(result.vectors[i], embeddings[i // (h * w), r, c])  # not transposed
        xmin, _, _, ymax = chip.utm_bounds
        expected = (xmin + 320 * c, ymax - 320 * (r + 1), xmin + 320 * (c + 1), ymax - 320 * r)
        assert tuple(table.column("utm_bbox")[i].as_py()) == pytest.approx(expected, abs=1e-9)
        ring = wkb_polygon_rings(result.geometry_wkb[i])
        x, y = to_utm.transform(ring[:, 0], ring[:, 1])
        assert min(x) == pytest.approx(expected[0], abs=1e-3) and max(y) == pytest.approx(expected[3], abs=1e-3)
    assert table.column("chip_id").to_pylist()[h * w] == chips[1].chip_id
    geoparquet_validator = pytest.importorskip("geoparquet_validator")
    assert geoparquet_validator.failed(geoparquet_validator.check(str(out))) == []


def test_patch_bounds_tile_the_chip_exactly():
    boxes = patch_bounds((100.0, 200.0, 612.0, 712.0), 16, 16)
    assert boxes.shape == (16, 16, 4)
    assert tuple(boxes[0, 0]) == (100.0, 680.0, 132.0, 712.0)  # top-left patch
    assert tuple(boxes[15, 15]) == (580.0, 200.0, 612.0, 232.0)  # bottom-right patch


def test_never_overwrites_without_permission(tmp_path):
    chips = chips_33uuu(1)
    out = write_geoparquet(tmp_path / "e.gpq", chips, np.zeros((1, 4), np.float32), META)
    before = out.read_bytes()
    with pytest.raises(ClayInputError, match="already exists"):
        write_geoparquet(out, chips, np.ones((1, 4), np.float32), META)
    assert out.read_bytes() == before
    write_geoparquet(out, chips, np.ones((1, 4), np.float32), META, overwrite=True)
    assert read_embeddings(out).vectors[0, 0] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["e.gpq"]  # no temporary file left behind


def test_failed_write_leaves_no_partial_file(tmp_path):
    chips = chips_33uuu(2)
    with pytest.raises(ValueError):
        write_geoparquet(tmp_path / "e.gpq", chips, np.zeros((3, 4), np.float32), META)  # 3 rows, 2 chips
    assert list(tmp_path.iterdir()) == []


def test_read_rejects_non_embedding_files(tmp_path):
    import pyarrow as pa

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    with pytest.raises(ClayInputError, match="no 'embeddings' column"):
        read_embeddings(path)
    (tmp_path / "bad.gpq").write_bytes(b"not parquet")
    with pytest.raises(ClayInputError, match="not a readable Parquet"):
        read_embeddings(tmp_path / "bad.gpq")


def test_reads_plain_list_embeddings_like_clays_published_files(tmp_path):
    """Clay's own files come back as variable-length float lists; they read as [N, D] too."""
    import pyarrow as pa

    path = tmp_path / "clay.gpq"
    pq.write_table(
        pa.table({"source_url": ["a", "b"], "embeddings": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32()))}),
        path,
    )
    result = read_embeddings(path)
    np.testing.assert_array_equal(result.vectors, [[1, 2], [3, 4]])
    assert result.shape_per_row == (2,) and result.metadata == {}


def test_output_name_follows_clay():
    assert (
        output_name("27WXN", datetime.date(2020, 1, 1), datetime.date(2023, 12, 31))
        == "27WXN_20200101_20231231_v001.gpq"
    )
    assert output_name("33UUU", datetime.date(2017, 2, 16), datetime.date(2017, 2, 16), 12).endswith("_v012.gpq")


def test_satclip_column_is_float64_and_reads_back_exactly(tmp_path):
    chips = chips_33uuu(3)
    locations = np.random.default_rng(5).standard_normal((3, 256))  # float64, like SatCLIP's output
    out = write_geoparquet(
        tmp_path / "s.gpq",
        chips,
        np.ones((3, 2, 2, 4), np.float32),
        {**META, "embedding_shape": [2, 2, 4]},
        satclip=locations,
        explode_patches=True,
    )
    field = pq.read_schema(out).field("satclip")
    assert str(field.type.value_type) == "double" and field.type.list_size == 256
    result = read_embeddings(out)
    np.testing.assert_array_equal(result.satclip, np.repeat(locations, 4, axis=0))  # each patch row: its chip's
    assert (
        read_embeddings(write_geoparquet(tmp_path / "n.gpq", chips, np.ones((3, 4), np.float32), META)).satclip is None
    )
    geoparquet_validator = pytest.importorskip("geoparquet_validator")
    assert geoparquet_validator.failed(geoparquet_validator.check(str(out))) == []


def test_point_files_declare_points_and_pass_the_validator(tmp_path):
    """Point embeddings (embed-locations) are GeoParquet in their own right: Point type, no polygon
    orientation, and a covering that names a `bbox` column the table really has."""
    import pyarrow as pa

    from clay_core.locations import PointSet, write_point_embeddings

    lonlat = np.array([[12.5, 52.4], [-70.25, -33.5], [151.2, -33.9]])
    points = PointSet(lonlat, ["p0", "p1", "p2"], pa.table({"bbox": ["input field", "kept", "renamed"]}))
    out = write_point_embeddings(tmp_path / "points.gpq", points, np.ones((3, 4), np.float32), {"model": "m"})
    schema = pq.read_schema(out)
    column = json.loads(schema.metadata[b"geo"])["columns"]["geometry"]
    assert column["geometry_types"] == ["Point"] and "orientation" not in column
    assert column["bbox"] == [-70.25, -33.9, 151.2, 52.4]
    for path in column["covering"]["bbox"].values():
        assert path[0] in schema.names and path[1] in {f.name for f in schema.field(path[0]).type}
    table = pq.read_table(out)
    assert table.column("bbox").to_pylist()[1] == {"xmin": -70.25, "ymin": -33.5, "xmax": -70.25, "ymax": -33.5}
    assert table.column("bbox_input").to_pylist() == ["input field", "kept", "renamed"]
    validator = pytest.importorskip("geoparquet_validator")
    report = validator.check(str(out))
    assert validator.failed(report) == [], report
