"""EmbedJob: one typed spec, the chip size decided once, estimate (dry run) and run on real chip files."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clay_core.embed import EmbedOptions
from clay_core.embed_job import EmbedJob
from clay_core.errors import ClayInputError
from clay_core.models import load_model
from tests.helpers.chips import write_chip
from tests.helpers.reporters import RecordingReporter

CHIP = 64


@pytest.fixture(scope="module")
def chips(tmp_path_factory) -> Path:
    """Two dates of tile 33UUU and one of 32UPU, in one folder of Clay chips."""
    folder = tmp_path_factory.mktemp("chips")
    for counter, (mgrs, date) in enumerate([("33UUU", "2021-06-01"), ("33UUU", "2021-07-15"), ("32UPU", "2021-06-03")]):
        write_chip(folder, mgrs=mgrs, date=date, row=1, col=counter, counter=counter, seed=counter, size=CHIP)
    return folder


def tiny_job(chips: Path, **changes) -> EmbedJob:
    job = EmbedJob(
        sources=(str(chips),),
        preset="clay-v0-tiny",
        chip_size=CHIP,
        device="cpu",
        options=EmbedOptions(workers=0, batch_size=2),
    )
    return dataclasses.replace(job, **changes)


def test_models_expose_their_image_size():
    assert load_model("clay-v0-tiny", device="cpu").image_size == 512
    assert load_model("clay-v0-tiny", device="cpu", image_size=CHIP).image_size == CHIP
    assert load_model("clay-v1.5-tiny", device="cpu").image_size == 256


def test_open_decides_the_chip_size_once(chips):
    opened = tiny_job(chips).open()
    assert opened.chip_size == opened.model.image_size == CHIP
    assert opened.level == "mean"
    assert len(opened.sources[0].records()) == 3


def test_chip_size_defaults_to_the_models_and_must_match_the_chips(chips, tmp_path):
    job = tiny_job(chips, chip_size=None, output=tmp_path / "o.gpq")
    assert job.open().chip_size == 512  # the tiny preset's own size; the chips are 64 px
    with pytest.raises(ClayInputError, match="--chip-size 64"):
        job.run()
    assert not (tmp_path / "o.gpq").exists()


def test_tile_and_dates_narrow_the_source(chips):
    narrowed = tiny_job(chips, mgrs="33UUU", start=datetime.date(2021, 6, 1), end=datetime.date(2021, 6, 30))
    records = narrowed.open().sources[0].records()
    assert [(r.mgrs, r.date) for r in records] == [("33UUU", datetime.date(2021, 6, 1))]


def test_estimate_writes_nothing_and_notes_an_existing_output(chips, tmp_path):
    out = tmp_path / "o.gpq"
    estimate = tiny_job(chips, output=out).estimate()
    assert estimate["chips"] == 3 and estimate["estimated_seconds"] > 0 and estimate["estimated_bytes"] > 0
    assert "output_note" not in estimate and not out.exists()
    out.write_bytes(b"")
    assert "already exists" in tiny_job(chips, output=out).estimate()["output_note"]


def test_run_writes_every_chip_and_refuses_an_existing_output(chips, tmp_path):
    out = tmp_path / "o.gpq"
    summary = tiny_job(chips, output=out).run()
    assert summary.chips_written == 3
    assert pq.read_table(out).num_rows == 3
    with pytest.raises(ClayInputError, match="--overwrite"):
        tiny_job(chips, output=out).run()


def test_output_suffix_and_options_are_checked_before_the_model_loads(chips, tmp_path):
    with pytest.raises(ClayInputError, match="should end in .gpq"):
        tiny_job(chips, output=tmp_path / "o.csv", preset="no-such-model").run()
    with pytest.raises(ClayInputError, match="--batch-size"):
        tiny_job(
            chips, output=tmp_path / "o.gpq", preset="no-such-model", options=EmbedOptions(batch_size=0)
        ).estimate()


def test_a_preset_with_random_weights_is_a_warning_the_demo_model_is_not(chips):
    """QGIS's embed algorithms default to the clay-v0-small architecture: without a checkpoint the user got
    embeddings of random weights without a word."""
    random = RecordingReporter()
    tiny_job(chips).open(random)
    assert [level for level, _ in random.messages("clay-v0-tiny has random weights")] == ["warning"]
    demo = RecordingReporter()
    tiny_job(chips, preset="clay-v0-demo", chip_size=None).open(demo)
    assert demo.logs and not demo.messages("random weights")
    checkpoint = RecordingReporter()
    tiny_job(chips, preset=None, checkpoint=str(Path(__file__).parents[2] / "models" / "clay-v0-demo.ckpt")).open(
        checkpoint
    )
    assert checkpoint.logs and not checkpoint.messages("random weights")
