"""LocationJob: the batch loop of `clay embed-locations` as a library call, read back from real GeoParquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clay_core.errors import ClayInputError
from clay_core.location_job import LocationJob
from clay_core.models.satclip import satclip_embed_lonlat
from clay_core.parquet import read_embeddings
from tests.helpers.reporters import RecordingReporter


def test_points_are_embedded_in_batches_and_written(tmp_path: Path, satclip_checkpoint: Path) -> None:
    points = tmp_path / "sites.csv"
    points.write_text("lon,lat,name\n13.4,52.52,a\n-78.47,-0.18,b\n0,-90,c\n151.2,-33.9,d\n2.35,48.86,e\n")
    reporter = RecordingReporter()
    job = LocationJob(
        output=tmp_path / "sites.gpq", checkpoint=str(satclip_checkpoint), points=str(points), batch_size=2
    )
    summary = job.run(reporter)
    assert reporter.total == 5 and reporter.advances == [2, 2, 1]  # one step per batch of at most 2 points
    table = read_embeddings(summary.output)
    lonlat = np.stack([table.table.column("lon").to_numpy(), table.table.column("lat").to_numpy()], axis=1)
    expected = satclip_embed_lonlat(lonlat, satclip_checkpoint).astype(np.float32)
    np.testing.assert_array_equal(table.vectors, expected)  # batching changes no value
    assert table.metadata["points"] == 5 and table.metadata["source"] == str(points)
    result = summary.as_dict()
    assert result["points"] == 5 and result["embedding_dim"] == table.vectors.shape[1] == 256
    assert result["output"] == str(tmp_path / "sites.gpq") and result["device"] == "cpu"
    assert result["points_per_second"] is not None and result["points_per_second"] > 0


def test_a_grid_job_names_its_grid_and_warns_about_random_weights(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    job = LocationJob(output=tmp_path / "grid.gpq", preset="satclip-l10", bbox=(0.0, 0.0, 2.0, 1.0), spacing=0.5)
    summary = job.run(reporter)
    table = read_embeddings(summary.output)
    assert len(table) == summary.points == 8
    assert table.metadata["source"] == "grid bbox=0,0,2,1 spacing=0.5"
    assert [level for level, message in reporter.logs if "random weights" in message] == ["warning"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"points": "p.csv"}, "no model"),
        ({"preset": "satclip-l10"}, "no points"),
        ({"preset": "satclip-l10", "bbox": (0.0, 0.0, 1.0, 1.0)}, "no points"),
        ({"preset": "satclip-l10", "points": "p.csv", "bbox": (0.0, 0.0, 1.0, 1.0), "spacing": 1.0}, "not both"),
        ({"preset": "satclip-l10", "points": "p.csv", "batch_size": 0}, "--batch-size"),
    ],
)
def test_bad_jobs_are_refused_before_anything_is_read(tmp_path: Path, fields: dict, reason: str) -> None:
    job = LocationJob(output=tmp_path / "out.gpq", **fields)
    with pytest.raises(ClayInputError, match=reason):
        job.run()
    assert not (tmp_path / "out.gpq").exists()


def test_projected_points_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    points = tmp_path / "utm.csv"
    points.write_text("x,y\n500000,5800000\n")
    with pytest.raises(ClayInputError, match="degrees"):
        LocationJob(output=tmp_path / "out.gpq", preset="satclip-l10", points=str(points)).run()
    assert not (tmp_path / "out.gpq").exists()


def test_relative_paths_are_written_and_reported_absolute(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "sites.csv").write_text("lon,lat\n13.4,52.52\n")
    monkeypatch.chdir(tmp_path)
    summary = LocationJob(output="sites.gpq", preset="satclip-l10", points="sites.csv").run(RecordingReporter())
    assert Path(summary.output) == tmp_path / "sites.gpq"
    assert read_embeddings(tmp_path / "sites.gpq").metadata["source"] == str(tmp_path / "sites.csv")
