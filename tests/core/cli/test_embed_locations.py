"""`clay embed-locations`: points from CSV / vector files / a grid -> GeoParquet point embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from clay_core.cli import main
from clay_core.models.satclip import satclip_embed_lonlat
from clay_core.parquet import read_embeddings


def embed(*args: str) -> int:
    # The bar reporter prints errors as one line on stderr (the "none" reporter keeps quiet).
    return main(["--progress", "bar", "embed-locations", *map(str, args)])


def test_csv_points_are_embedded_with_their_attributes(tmp_path: Path, satclip_checkpoint: Path) -> None:
    points = tmp_path / "sites.csv"
    points.write_text("name,Longitude,Latitude\nberlin,13.40,52.52\nquito,-78.47,-0.18\npole,0,-90\n")
    out = tmp_path / "sites.gpq"
    assert embed(points, "-o", out, "--checkpoint", satclip_checkpoint) == 0
    table = read_embeddings(out)
    lonlat = np.array([[13.40, 52.52], [-78.47, -0.18], [0.0, -90.0]])
    expected = satclip_embed_lonlat(lonlat, satclip_checkpoint).astype(np.float32)
    np.testing.assert_array_equal(table.vectors, expected)
    assert table.shape_per_row == (256,)
    assert table.table.column("name").to_pylist() == ["berlin", "quito", "pole"]
    assert table.chip_ids == ["0", "1", "2"]
    np.testing.assert_array_equal(np.stack([table.table.column("lon"), table.table.column("lat")], 1), lonlat)
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    column = geo["columns"]["geometry"]
    assert column["geometry_types"] == ["Point"] and column["encoding"] == "WKB"
    assert column["bbox"] == [-78.47, -90.0, 13.4, 52.52]
    assert table.metadata["family"] == "satclip" and table.metadata["geometry"] == "point"
    wkb = table.geometry_wkb[0]
    assert wkb[:5] == b"\x01\x01\x00\x00\x00" and np.frombuffer(wkb[5:], "<f8").tolist() == [13.40, 52.52]


def test_vector_points_in_a_projected_crs_are_reprojected(tmp_path: Path, satclip_checkpoint: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import Point

    lonlat = np.array([[12.6045, 52.4912], [-67.6412, -47.853]])
    frame = gpd.GeoDataFrame({"site": ["a", "b"]}, geometry=[Point(*p) for p in lonlat], crs="EPSG:4326")
    path = tmp_path / "sites.gpkg"
    frame.to_crs("EPSG:3857").to_file(path, driver="GPKG")
    out = tmp_path / "sites.gpq"
    assert embed(path, "-o", out, "--checkpoint", satclip_checkpoint, "--id-field", "site") == 0
    table = read_embeddings(out)
    got = np.stack([table.table.column("lon"), table.table.column("lat")], 1)
    assert np.abs(got - lonlat).max() < 1e-9
    assert table.chip_ids == ["a", "b"]
    assert np.abs(table.vectors - satclip_embed_lonlat(got, satclip_checkpoint)).max() < 1e-6


def test_grid_mode_embeds_cell_centres(tmp_path: Path, satclip_checkpoint: Path) -> None:
    out = tmp_path / "grid.gpq"
    assert embed("--bbox", "0,0,2,1", "--spacing", "0.5", "-o", out, "--checkpoint", satclip_checkpoint) == 0
    table = read_embeddings(out)
    lon, lat = table.table.column("lon").to_numpy(), table.table.column("lat").to_numpy()
    assert len(table) == 8
    assert sorted(set(lon)) == [0.25, 0.75, 1.25, 1.75] and sorted(set(lat)) == [0.25, 0.75]
    assert table.chip_ids[0] == "r0_c0" and (lon[0], lat[0]) == (0.25, 0.75)  # row 0 is the northern row


def test_bad_inputs_exit_2_with_a_reason(tmp_path: Path, satclip_checkpoint: Path, capsys) -> None:
    points = tmp_path / "utm.csv"
    points.write_text("x,y\n500000,5800000\n")
    out = tmp_path / "out.gpq"
    cases = [
        ((points, "-o", out, "--checkpoint", satclip_checkpoint), "degrees"),
        ((points, "-o", out), "no model"),
        (("-o", out, "--checkpoint", satclip_checkpoint), "no points"),
        (("--bbox", "0,0,1,1", "--spacing", "0", "-o", out, "--checkpoint", satclip_checkpoint), "spacing"),
    ]
    for args, reason in cases:
        assert embed(*args) == 2
        assert reason in capsys.readouterr().err
    assert not out.exists()
    import geopandas as gpd
    from shapely.geometry import box

    polygons = tmp_path / "fields.geojson"
    gpd.GeoDataFrame({"id": [1]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:4326").to_file(polygons, driver="GeoJSON")
    assert embed(polygons, "-o", out, "--checkpoint", satclip_checkpoint) == 2
    assert "needs points" in capsys.readouterr().err


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, satclip_checkpoint: Path, capsys) -> None:
    out = tmp_path / "grid.gpq"
    out.write_bytes(b"keep me")
    args = ("--bbox", "0,0,1,1", "--spacing", "1", "-o", out, "--checkpoint", satclip_checkpoint)
    assert embed(*args) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert embed(*args, "--overwrite") == 0
    assert len(read_embeddings(out)) == 1


def test_a_clay_checkpoint_is_refused(tmp_path: Path, shared_fixtures: Path, capsys) -> None:
    clay = shared_fixtures / "clay_v15_micro" / "checkpoint.ckpt"
    assert embed("--bbox", "0,0,1,1", "--spacing", "1", "-o", tmp_path / "o.gpq", "--checkpoint", clay) == 2
    assert "SatCLIP" in capsys.readouterr().err


def test_an_unwritable_output_fails_before_any_embedding(tmp_path: Path, monkeypatch, capsys) -> None:
    import clay_core.locations

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load when the output cannot be written")

    monkeypatch.setattr(clay_core.locations, "load_satclip", no_model)
    missing = tmp_path / "no such folder" / "out.gpq"
    assert embed("--bbox", "0,0,1,1", "--spacing", "1", "-o", missing, "--model", "satclip-l10") == 2
    assert "does not exist" in capsys.readouterr().err
