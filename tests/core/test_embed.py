"""The embedding pipeline on a generated source: batching, nodata, bad chips, resume, dry run."""

from __future__ import annotations

import dataclasses
import datetime
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq
import pytest

from clay_core.embed import EmbedOptions, embed_sources, run_model
from clay_core.embed_estimate import estimate_job
from clay_core.embed_parts import parts_dir_for
from clay_core.errors import ClayInputError
from clay_core.parquet import read_embeddings
from clay_core.sources.base import ChipData, ChipReadError, ChipRecord, nodata_fraction
from tests.helpers.reporters import RecordingReporter

SIZE = 64  # pixels per chip side; the tiny model is built for it


@dataclass
class ArraySource:
    """A ChipSource test double: chips on the 33UUU grid with pixels generated from their row/col.

    `nodata` chips are NaN over the given share of rows; `bad` chips raise ChipReadError; reading chip
    `crash_at` raises SystemExit (a process dying mid-job). `reads` counts the chips read."""

    n: int = 10
    bands: tuple[str, ...] = ("B02", "B03", "B04", "B08")
    nodata: dict[int, float] = field(default_factory=dict)
    bad: frozenset[int] = frozenset()
    crash_at: int | None = None
    reads: list[str] = field(default_factory=list)

    def records(self) -> list[ChipRecord]:
        span = SIZE * 10.0
        out = []
        for i in range(self.n):
            row, col = divmod(i, 4)
            xmin, ymax = 300000.0 + col * span, 5900040.0 - row * span
            out.append(
                ChipRecord(
                    f"33UUU_20200101_{row:03d}_{col:03d}",
                    "memory://scene",
                    datetime.date(2020, 1, 1),
                    32633,
                    (xmin, ymax - span, xmin + span, ymax),
                    row,
                    col,
                    "33UUU",
                    SIZE,
                    10.0,
                )
            )
        return out

    def read(self, record: ChipRecord) -> ChipData:
        index = record.row * 4 + record.col
        self.reads.append(record.chip_id)
        if index == self.crash_at:
            raise SystemExit("simulated crash")
        if index in self.bad:
            raise ChipReadError(f"chip {record.chip_id}: wrong band count (3, expected 4)")
        rng = np.random.default_rng(index)
        pixels = rng.uniform(0, 4000, (len(self.bands), SIZE, SIZE)).astype(np.float32)
        share = self.nodata.get(index, 0.0)
        pixels[:, : int(round(share * SIZE)), :] = np.nan
        return ChipData(record, pixels, nodata_fraction(pixels))


@pytest.fixture(scope="module")
def tiny_model():
    from clay_core.models import load_model

    return load_model("clay-v0-tiny", device="cpu", image_size=SIZE)


def test_embeds_every_good_chip_with_nodata_and_bad_chips_reported(tmp_path, tiny_model):
    source = ArraySource(n=10, nodata={2: 0.75, 5: 0.25}, bad=frozenset({7}))
    out = tmp_path / "out.gpq"
    summary = embed_sources([source], tiny_model, out, EmbedOptions(level="patch", batch_size=3, workers=0))
    assert (summary.chips_total, summary.chips_written, summary.chips_skipped_nodata, summary.chips_failed) == (
        10,
        8,
        1,
        1,
    )
    assert summary.problems[0].chip_id == "33UUU_20200101_001_003" and "wrong band count" in summary.problems[0].reason
    assert summary.model_s > 0 and summary.chips_per_s > 0 and summary.output_bytes == out.stat().st_size
    result = read_embeddings(out)
    records = {r.chip_id: r for r in source.records()}
    expected_ids = [cid for i, cid in enumerate(records) if i not in (2, 7)]
    assert result.chip_ids == expected_ids
    assert result.shape_per_row == (2, 2, 256)
    fractions = dict(zip(result.chip_ids, result.table.column("nodata_fraction").to_pylist(), strict=True))
    assert fractions["33UUU_20200101_001_001"] == pytest.approx(0.25)
    assert result.table.column("filled_bands").to_pylist()[0] == [
        b for b in tiny_model.input_bands if b not in source.bands
    ]
    # Batching must not change a chip's embedding: compare with the chip embedded alone.
    chip = source.read(records["33UUU_20200101_001_001"])
    alone = run_model(tiny_model, chip.pixels[None], source.bands, [chip.record], "patch")
    np.testing.assert_allclose(
        result.reshaped()[expected_ids.index(chip.record.chip_id)], alone[0], rtol=1e-4, atol=1e-4
    )
    assert np.isfinite(result.vectors).all()
    assert not parts_dir_for(out).exists()


def test_reader_processes_give_the_same_output(tmp_path, tiny_model):
    inline = embed_sources([ArraySource(n=6)], tiny_model, tmp_path / "a.gpq", EmbedOptions(batch_size=4, workers=0))
    workers = embed_sources([ArraySource(n=6)], tiny_model, tmp_path / "b.gpq", EmbedOptions(batch_size=4, workers=2))
    assert inline.chips_written == workers.chips_written == 6
    a, b = read_embeddings(tmp_path / "a.gpq"), read_embeddings(tmp_path / "b.gpq")
    assert a.chip_ids == b.chip_ids
    np.testing.assert_allclose(a.vectors, b.vectors, rtol=1e-5, atol=1e-5)


def test_resumes_after_a_crash_without_duplicates_or_losses(tmp_path, tiny_model):
    out = tmp_path / "out.gpq"
    options = EmbedOptions(level="mean", batch_size=2, workers=0, part_chips=2, part_seconds=1e9)
    with pytest.raises(SystemExit):
        embed_sources([ArraySource(n=10, crash_at=7, nodata={1: 0.9})], tiny_model, out, options)
    assert not out.exists()
    parts = sorted(parts_dir_for(out).glob("part-*.parquet"))
    assert len(parts) == 3  # chips 0-5 settled in parts of 2; chip 6 was in flight with 7
    second = ArraySource(n=10, nodata={1: 0.9})
    summary = embed_sources([second], tiny_model, out, options)
    assert second.reads == [f"33UUU_20200101_{i // 4:03d}_{i % 4:03d}" for i in range(6, 10)]  # only the rest
    assert summary.chips_resumed == 6 and summary.chips_written == 9 and summary.chips_skipped_nodata == 1
    result = read_embeddings(out)
    ids = result.chip_ids
    assert len(ids) == len(set(ids)) == 9
    reference = embed_sources([ArraySource(n=10, nodata={1: 0.9})], tiny_model, tmp_path / "ref.gpq", options)
    assert reference.chips_written == 9
    expected = read_embeddings(tmp_path / "ref.gpq")
    assert ids == expected.chip_ids
    np.testing.assert_allclose(result.vectors, expected.vectors, rtol=1e-5, atol=1e-5)


def test_parts_of_another_job_are_refused_then_discarded_with_overwrite(tmp_path, tiny_model):
    out = tmp_path / "out.gpq"
    options = EmbedOptions(batch_size=2, workers=0, part_chips=2)
    with pytest.raises(SystemExit):
        embed_sources([ArraySource(n=6, crash_at=4)], tiny_model, out, options)
    other_level = EmbedOptions(level="patch", batch_size=2, workers=0, part_chips=2)
    with pytest.raises(ClayInputError, match="different job.*level"):
        embed_sources([ArraySource(n=6)], tiny_model, out, other_level)
    summary = embed_sources(
        [ArraySource(n=6)], tiny_model, out, EmbedOptions(level="patch", batch_size=2, workers=0, overwrite=True)
    )
    assert summary.chips_resumed == 0 and summary.chips_written == 6


def test_parts_of_other_random_weights_are_never_mixed_in(tmp_path, tiny_model):
    """Two fresh presets have different random weights: the second must not resume the first's parts."""
    from clay_core.models import load_model

    out = tmp_path / "out.gpq"
    options = EmbedOptions(batch_size=2, workers=0, part_chips=2)
    with pytest.raises(SystemExit):
        embed_sources([ArraySource(n=6, crash_at=4)], tiny_model, out, options)
    other = load_model("clay-v0-tiny", device="cpu", image_size=SIZE)
    with pytest.raises(ClayInputError, match="weights_sha256"):
        embed_sources([ArraySource(n=6)], other, out, options)


def test_never_overwrites_an_existing_output(tmp_path, tiny_model):
    out = tmp_path / "out.gpq"
    embed_sources([ArraySource(n=2)], tiny_model, out, EmbedOptions(workers=0))
    before = out.read_bytes()
    with pytest.raises(ClayInputError, match="already exists"):
        embed_sources([ArraySource(n=3)], tiny_model, out, EmbedOptions(workers=0))
    assert out.read_bytes() == before
    embed_sources([ArraySource(n=3)], tiny_model, out, EmbedOptions(workers=0, overwrite=True))
    assert pq.read_metadata(out).num_rows == 3


def test_a_job_where_every_chip_fails_is_an_input_error(tmp_path, tiny_model):
    with pytest.raises(ClayInputError, match="no chip could be read.*wrong band count"):
        embed_sources(
            [ArraySource(n=3, bad=frozenset({0, 1, 2}))], tiny_model, tmp_path / "o.gpq", EmbedOptions(workers=0)
        )


def test_exploded_patch_output(tmp_path, tiny_model):
    out = tmp_path / "p.gpq"
    embed_sources([ArraySource(n=2)], tiny_model, out, EmbedOptions(level="patch", workers=0, explode_patches=True))
    result = read_embeddings(out)
    assert len(result) == 2 * 2 * 2 and result.shape_per_row == (256,)
    assert result.table.column("patch_row").to_pylist()[:4] == [0, 0, 1, 1]
    with pytest.raises(ClayInputError, match="explode-patches"):
        embed_sources(
            [ArraySource(n=2)],
            tiny_model,
            tmp_path / "m.gpq",
            EmbedOptions(level="mean", workers=0, explode_patches=True),
        )
    assert not parts_dir_for(tmp_path / "m.gpq").exists()  # refused before any work


def test_dry_run_measures_and_writes_nothing(tmp_path, tiny_model):
    estimate = estimate_job([ArraySource(n=10)], tiny_model, EmbedOptions(level="patch", workers=2))
    assert estimate["chips"] == 10 and estimate["measured_chips"] == 3  # the first read + 2 measured
    assert estimate["model_s_per_chip"] > 0 and estimate["estimated_seconds"] > 0
    # 2x2 patches x 256 floats per chip: at least the raw float bytes minus what zstd can squeeze from noise
    assert 10 * 4 * 256 * 4 * 0.7 < estimate["estimated_bytes"] < 10 * 4 * 256 * 4 * 1.5
    assert list(tmp_path.iterdir()) == []


@dataclass
class SlowToOpenSource(ArraySource):
    """Its first read pays `opening_s` (a scene's files opened, a JPEG 2000 block decoded), later reads nothing."""

    opening_s: float = 0.4

    def read(self, record: ChipRecord) -> ChipData:
        if not self.reads:
            time.sleep(self.opening_s)
        return super().read(record)


def test_the_dry_run_counts_opening_the_files_once_not_for_every_chip(tiny_model):
    estimate = estimate_job([SlowToOpenSource(n=40)], tiny_model, EmbedOptions(level="patch", workers=0))
    # No wall-clock ceilings (a loaded machine slows every read): the sleep is a floor, and the per-chip read is
    # measured on the reads after it, so it stays below it however slow the machine is.
    assert estimate["opening_s"] >= 0.35 > estimate["read_s_per_chip"]
    per_chip = max(estimate["model_s_per_chip"], estimate["read_s_per_chip"])
    # counted once: the old estimate (the mean over the first reads, for every chip) was >= 40 x 0.2 s
    assert estimate["estimated_seconds"] == pytest.approx(estimate["opening_s"] + 40 * per_chip)


def test_bad_options_are_input_errors(tmp_path, tiny_model):
    for options in (EmbedOptions(batch_size=0), EmbedOptions(max_nodata=1.5), EmbedOptions(workers=-1)):
        with pytest.raises(ClayInputError):
            embed_sources([ArraySource(n=1)], tiny_model, tmp_path / "o.gpq", options)
    with pytest.raises(ClayInputError, match="level"):
        embed_sources([ArraySource(n=1)], tiny_model, tmp_path / "o.gpq", EmbedOptions(level="cls"))


# ----------------------------------------------------------------------------------------------
# Opt-in SatCLIP column and Clay v1.5 through the pipeline (micro fixtures)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v15_model(clay_v15_checkpoint):
    from clay_core.models import load_model

    return load_model(clay_v15_checkpoint, device="cpu", image_size=SIZE)


# Batches of different sizes round float64 matmuls differently (~1e-15); SatCLIP's parity bound is 1e-9.
SATCLIP_ATOL = 1e-12


def satclip_of_centres(records, checkpoint) -> np.ndarray:
    from clay_core.models.satclip import satclip_embed_lonlat

    return satclip_embed_lonlat(np.array([r.center_lonlat for r in records]), str(checkpoint))


@pytest.mark.parametrize("explode", [False, True])
def test_satclip_column_holds_the_location_embedding_of_each_chip_centre(
    tmp_path, tiny_model, satclip_checkpoint, explode
):
    import hashlib

    source = ArraySource(n=5, nodata={3: 0.9})
    out = tmp_path / "s.gpq"
    embed_sources(
        [source],
        tiny_model,
        out,
        EmbedOptions(level="patch", batch_size=2, workers=0, explode_patches=explode, satclip=str(satclip_checkpoint)),
    )
    result = read_embeddings(out)
    records = {r.chip_id: r for r in source.records()}
    expected = satclip_of_centres([records[chip_id] for chip_id in result.chip_ids], satclip_checkpoint)
    assert result.satclip.dtype == np.float64 and result.satclip.shape == (len(result), 256)
    assert len(result) == (4 * 4 if explode else 4)  # chip 3 skipped for nodata; 2x2 patches when exploded
    np.testing.assert_allclose(result.satclip, expected, rtol=0, atol=SATCLIP_ATOL)
    assert len(np.unique(result.satclip[:, 0])) == 4  # one location per chip, not one for the whole file
    meta = result.metadata["satclip"]
    assert meta["checkpoint_sha256"] == hashlib.sha256(satclip_checkpoint.read_bytes()).hexdigest()
    assert meta["family"] == "satclip" and meta["legendre_polys"] == 10 and meta["dtype"] == "float64"
    assert pq.read_schema(out).field("satclip").type.list_size == 256


def test_no_satclip_column_unless_asked(tmp_path, tiny_model):
    out = tmp_path / "o.gpq"
    embed_sources([ArraySource(n=2)], tiny_model, out, EmbedOptions(workers=0))
    result = read_embeddings(out)
    assert result.satclip is None and "satclip" not in result.metadata


def test_resume_keeps_the_satclip_column_and_refuses_another_satclip_setting(tmp_path, tiny_model, satclip_checkpoint):
    out = tmp_path / "out.gpq"
    with_satclip = EmbedOptions(
        level="mean", batch_size=2, workers=0, part_chips=2, part_seconds=1e9, satclip=str(satclip_checkpoint)
    )
    with pytest.raises(SystemExit):
        embed_sources([ArraySource(n=8, crash_at=5)], tiny_model, out, with_satclip)
    parts = sorted(parts_dir_for(out).glob("part-*.parquet"))
    assert parts and all(pq.read_schema(p).field("satclip").type.list_size == 256 for p in parts)
    without = dataclasses.replace(with_satclip, satclip=None)
    with pytest.raises(ClayInputError, match="different job.*satclip"):
        embed_sources([ArraySource(n=8)], tiny_model, out, without)
    other = dataclasses.replace(with_satclip, satclip="satclip-l10")  # other (random) weights
    with pytest.raises(ClayInputError, match="different job.*satclip"):
        embed_sources([ArraySource(n=8)], tiny_model, out, other)
    source = ArraySource(n=8)
    summary = embed_sources([source], tiny_model, out, with_satclip)
    assert summary.chips_resumed == 4 and summary.chips_written == 8
    result = read_embeddings(out)
    records = {r.chip_id: r for r in source.records()}
    np.testing.assert_allclose(
        result.satclip,
        satclip_of_centres([records[c] for c in result.chip_ids], satclip_checkpoint),
        rtol=0,
        atol=SATCLIP_ATOL,
    )


def test_satclip_option_must_name_a_satclip_model(tmp_path, tiny_model, clay_v15_checkpoint):
    out = tmp_path / "o.gpq"
    with pytest.raises(ClayInputError, match="not a SatCLIP"):
        embed_sources([ArraySource(n=1)], tiny_model, out, EmbedOptions(workers=0, satclip=str(clay_v15_checkpoint)))
    assert not out.exists() and not parts_dir_for(out).exists()


@pytest.mark.parametrize("level", ["cls", "patch"])
def test_clay_v15_embeds_a_four_band_source_without_filling(tmp_path, v15_model, satclip_checkpoint, level):
    source = ArraySource(n=3, bands=("B02", "B03", "B04", "B08"))
    out = tmp_path / "v15.gpq"
    summary = embed_sources(
        [source], v15_model, out, EmbedOptions(level=level, batch_size=2, workers=0, satclip=str(satclip_checkpoint))
    )
    assert summary.chips_written == 3 and summary.level == level
    result = read_embeddings(out)
    assert result.shape_per_row == ((64,) if level == "cls" else (8, 8, 64))
    meta = result.metadata
    assert meta["family"] == "clay-v1.5" and meta["bands"] == ["B02", "B03", "B04", "B08"]
    assert meta["wavelengths_um"] == [0.493, 0.56, 0.665, 0.842]
    assert len(meta["normalization"]["mean"]) == 4 and meta["filled_bands"] == []
    assert result.table.column("filled_bands").to_pylist() == [[], [], []]
    chip = source.read(source.records()[1])
    alone = run_model(v15_model, chip.pixels[None], source.bands, [chip.record], level)
    np.testing.assert_allclose(result.reshaped()[1], alone[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        result.satclip, satclip_of_centres(source.records(), satclip_checkpoint), rtol=0, atol=SATCLIP_ATOL
    )


def test_chips_of_another_size_than_the_model_are_refused_before_any_work(tmp_path, clay_v15_checkpoint):
    from clay_core.models import load_model

    model = load_model(clay_v15_checkpoint, device="cpu")  # 256 px default
    out = tmp_path / "o.gpq"
    with pytest.raises(ClayInputError, match="chips are 64 px.*--chip-size 64"):
        embed_sources([ArraySource(n=2)], model, out, EmbedOptions(level="patch", workers=0))
    assert not parts_dir_for(out).exists()


def test_satclip_of_a_chip_without_location_is_nan(satclip_checkpoint):
    from clay_core.locations import load_satclip, satclip_vectors
    from clay_core.sources.chip_folder import NO_LOCATION

    located = ArraySource(n=1).records()[0]
    unknown = ChipRecord("damaged", "memory://x", datetime.date(2020, 1, 1), 0, NO_LOCATION, -1, -1, None, 0, 0.0)
    vectors = satclip_vectors(load_satclip(str(satclip_checkpoint)), [located, unknown])
    np.testing.assert_allclose(vectors[0], satclip_of_centres([located], satclip_checkpoint)[0], rtol=0, atol=1e-12)
    assert np.isnan(vectors[1]).all()


def test_a_merge_killed_half_way_leaves_no_temporary_after_the_next_run(tmp_path, tiny_model):
    """kill -9 during the final merge leaves `.out.gpq.*.tmp` beside the output: the next run removes it."""
    from clay_core.atomic import stale_temporaries, temporary_sibling

    out = tmp_path / "out.gpq"
    leftover = temporary_sibling(out)
    leftover.write_bytes(b"half a parquet file")
    options = EmbedOptions(level="mean", batch_size=2, workers=0)
    embed_sources([ArraySource(n=3)], tiny_model, out, options)
    assert stale_temporaries(out) == [] and not leftover.exists()
    assert len(read_embeddings(out)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gpq"]


def test_contiguous_per_worker_gives_each_reader_one_run_of_batches():
    from clay_core.embed_readers import contiguous_per_worker

    for n in range(1, 12):
        for workers in (1, 2, 3, 4):
            batches = [[i] for i in range(n)]
            ordered = contiguous_per_worker(batches, workers)
            assert sorted(ordered) == batches  # nothing lost or repeated
            # DataLoader hands batch i to worker i % workers: each worker must see one contiguous run.
            for worker in range(workers):
                mine = [batch[0] for batch in ordered[worker::workers]]
                assert mine == list(range(mine[0], mine[0] + len(mine))) if mine else True


def test_the_bands_filled_with_their_mean_are_named_before_the_run(tmp_path, tiny_model):
    """Four bands into the ten-band v0 model embed without error; the log says which six are made up."""
    log = RecordingReporter()
    source = ArraySource(n=2)
    embed_sources([source], tiny_model, tmp_path / "o.gpq", EmbedOptions(batch_size=2, workers=0), log)
    missing = [band for band in tiny_model.input_bands if band not in source.bands]
    notes = [message for _, message in log.messages("filled with their mean")]
    assert notes == [
        f"{len(missing)} of the model's bands are not in the input and are filled with their mean: "
        f"{', '.join(missing)} (the file lists them in filled_bands)"
    ]
    assert read_embeddings(tmp_path / "o.gpq").table.column("filled_bands").to_pylist()[0] == missing
    complete = RecordingReporter()
    every_band = ArraySource(n=2, bands=tuple(tiny_model.input_bands))
    embed_sources([every_band], tiny_model, tmp_path / "all.gpq", EmbedOptions(batch_size=2, workers=0), complete)
    assert not complete.messages("filled")
