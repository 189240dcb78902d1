"""MAE training loop: the loss drops, checkpoints load everywhere, --resume is exact, data order shards."""

from __future__ import annotations

import dataclasses
import datetime
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clay_core.errors import ClayInputError
from clay_core.models import load_model
from clay_core.progress import NullReporter
from clay_core.sources.base import ChipData, ChipRecord
from clay_core.train import TrainingOrder, TrainSettings, train

TINY_MODEL = {
    "image_size": 32, "patch_size": 8, "dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "mlp_ratio": 2.0,
    "decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2, "decoder_dim_head": 8, "decoder_mlp_ratio": 2.0,
}
OFFICIAL_HPARAMS = {"model_size", "mask_ratio", "image_size", "patch_size", "shuffle", "lr", "wd", "b1", "b2",
                    "embeddings_level", "band_groups"}


class SyntheticChips:
    """An in-memory ChipSource: smooth, learnable S2-like patterns (10 bands; SAR/DEM absent -> filled)."""

    bands = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")

    def __init__(self, count: int = 6, size: int = 40) -> None:
        self.count, self.size = count, size

    def records(self) -> list[ChipRecord]:
        resolution = 10.0
        out = []
        for index in range(self.count):
            xmin, ymax = 330000.0 + index * self.size * resolution, 5820000.0
            bounds = (xmin, ymax - self.size * resolution, xmin + self.size * resolution, ymax)
            out.append(ChipRecord(f"chip_{index:02d}", f"mem://{index}", datetime.date(2020, 6, 1), 32633,
                                  bounds, 0, index, "33UUU", self.size, resolution))
        return out

    def read(self, record: ChipRecord) -> ChipData:
        rng = np.random.default_rng(record.col)
        yy, xx = np.mgrid[0: self.size, 0: self.size] / self.size
        phase = rng.uniform(0, 2 * np.pi, size=2)
        pattern = np.sin(2 * np.pi * xx + phase[0]) * np.cos(2 * np.pi * yy + phase[1])
        levels = np.linspace(1200.0, 3000.0, len(self.bands))[:, None, None]
        pixels = (levels + 800.0 * pattern[None] * rng.uniform(0.5, 1.5, size=(len(self.bands), 1, 1)))
        return ChipData(record, pixels.astype(np.float32), 0.0)


def _settings(tmp_path: Path, name: str = "run.ckpt", **changes) -> TrainSettings:
    base = TrainSettings(sources=[SyntheticChips()], output=tmp_path / name, preset="clay-v0-tiny",
                         model_overrides=dict(TINY_MODEL), steps=4, batch_size=2, lr=1e-3, checkpoint_every=2,
                         device="cpu", threads=1, cache_mb=64)
    return dataclasses.replace(base, **changes)


def test_loss_drops_and_checkpoint_loads(tmp_path: Path) -> None:
    result = train(_settings(tmp_path, steps=40, batch_size=4, checkpoint_every=20))
    assert result.global_step == 40 and len(result.losses) == 40
    assert np.mean(result.losses[-5:]) < 0.7 * np.mean(result.losses[:5]), result.losses
    checkpoint = Path(result.checkpoint)
    assert Path(result.loss_plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)  # plain tensors and containers only
    assert {"state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version"} <= set(raw)
    assert raw["global_step"] == 40
    assert set(raw["hyper_parameters"]) >= OFFICIAL_HPARAMS
    assert raw["hyper_parameters"]["mask_ratio"] == 0.75
    assert all(key.startswith(("model.encoder.", "model.decoder.")) for key in raw["state_dict"])

    model = load_model(checkpoint, device="cpu")
    assert model.family == "clay-v0"
    assert (model.config.image_size, model.config.patch_size, model.config.heads) == (32, 8, 2)
    trained = {f"model.encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    for key, value in trained.items():
        torch.testing.assert_close(value, raw["state_dict"][key], rtol=0, atol=0)
    chip = SyntheticChips().read(SyntheticChips().records()[0]).pixels[:, :32, :32]
    batch = model.prepare(chip[None], SyntheticChips.bands, [[12.5, 52.5]], [datetime.date(2020, 6, 1)])
    assert model.embed(batch, "patch").shape == (1, 4, 4, 32)


def test_sentinel2_only_band_groups_train_and_fill_nothing_else(tmp_path: Path) -> None:
    """Opt-in band groups: no SAR/DEM tokens, the checkpoint keeps its groups, nothing is reported filled."""
    s2_groups = (("rgb", (2, 1, 0)), ("rededge", (3, 4, 5, 7)), ("nir", (6,)), ("swir", (8, 9)))
    settings = _settings(tmp_path, steps=2, model_overrides={**TINY_MODEL, "band_groups": s2_groups})
    result = train(settings)
    assert np.isfinite(result.losses).all()
    model = load_model(result.checkpoint, device="cpu")
    assert model.config.band_groups == s2_groups
    assert model.filled_bands(SyntheticChips.bands) == ()
    assert model.filled_bands(("B02", "B03", "B04")) == ("B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    source = SyntheticChips(count=2, size=32)
    chips = [source.read(record) for record in source.records()]
    batch = model.prepare(np.stack([chip.pixels for chip in chips]), source.bands,
                          [chip.record.center_lonlat for chip in chips], [chip.record.date for chip in chips])
    assert tuple(model.embed(batch, "group").shape) == (2, 4, 4, 4, 32)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = train(_settings(tmp_path, "straight.ckpt", steps=6))
    train(_settings(tmp_path, "split.ckpt", steps=3))
    resumed = train(_settings(tmp_path, "split.ckpt", steps=6, resume=True))
    assert resumed.start_step == 3 and resumed.global_step == 6
    assert resumed.losses == straight.losses
    a = torch.load(tmp_path / "straight.ckpt", weights_only=True)
    b = torch.load(tmp_path / "split.ckpt", weights_only=True)
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0)
    for slot, state in a["clay_train"]["optimizer"]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(b["clay_train"]["optimizer"]["state"][slot][name], value, rtol=0, atol=0)
    assert a["clay_train"]["scheduler"] == b["clay_train"]["scheduler"]
    assert a["clay_train"]["data"] == b["clay_train"]["data"]


def test_gradient_accumulation_and_lr_schedule(tmp_path: Path) -> None:
    result = train(_settings(tmp_path, steps=3, accumulate=2, restart_period=2, restart_mult=1))
    raw = torch.load(result.checkpoint, weights_only=True)
    state = raw["clay_train"]
    assert state["data"]["samples_per_rank"] == 3 * 2 * 2  # steps x accumulate x batch
    # v0 quirk: eta_min = 10 x lr, so within a cycle the lr rises from lr towards 10 x lr, then restarts.
    assert state["scheduler"]["T_cur"] == 1 and state["scheduler"]["eta_min"] == pytest.approx(1e-2)
    assert state["scheduler"]["_last_lr"][0] == pytest.approx(1e-3 + (1e-2 - 1e-3) * 0.5)


def test_existing_output_and_missing_resume_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ClayInputError, match="nothing to resume"):
        train(_settings(tmp_path, "absent.ckpt", resume=True))
    (tmp_path / "taken.ckpt").write_bytes(b"keep me")
    with pytest.raises(ClayInputError, match="--overwrite"):
        train(_settings(tmp_path, "taken.ckpt"))
    assert (tmp_path / "taken.ckpt").read_bytes() == b"keep me"
    with pytest.raises(ClayInputError, match="smaller"):
        train(_settings(tmp_path, "small.ckpt", sources=[SyntheticChips(size=16)]))


def test_training_order_shards_like_distributed_sampler() -> None:
    def take(order: TrainingOrder, n: int) -> list[tuple[int, int]]:
        stream = iter(order)
        return [next(stream) for _ in range(n)]

    rank0 = take(TrainingOrder(7, seed=3, rank=0, world_size=2), 4)
    rank1 = take(TrainingOrder(7, seed=3, rank=1, world_size=2), 4)
    assert {e for e, _ in rank0 + rank1} == {0}
    assert {i for _, i in rank0 + rank1} == set(range(7))  # one epoch covers every chip (one padded repeat)
    # Starting at an offset continues the same stream (what --resume relies on).
    full = take(TrainingOrder(7, seed=3), 12)
    assert take(TrainingOrder(7, seed=3, start=5), 7) == full[5:]
    assert [e for e, _ in full] == [0] * 7 + [1] * 5
    assert sorted(i for _, i in full[:7]) == list(range(7))


class _LogRecorder(NullReporter):
    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))


def test_missing_matplotlib_only_skips_the_loss_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib is a convenience: without it (or with a broken one) training still writes its checkpoints."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    reporter = _LogRecorder()
    result = train(_settings(tmp_path, steps=2), reporter)
    assert result.global_step == 2 and Path(result.checkpoint).is_file()
    assert result.loss_plot is None and not (tmp_path / "run.loss.png").exists()
    warnings = [message for level, message in reporter.logs if level == "warning"]
    assert len(warnings) == 1 and "matplotlib" in warnings[0]  # once per run, not once per checkpoint


def test_failing_loss_plot_warns_and_keeps_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def broken_savefig(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    reporter = _LogRecorder()
    result = train(_settings(tmp_path, steps=2, checkpoint_every=1), reporter)
    assert result.global_step == 2 and result.loss_plot is None
    assert torch.load(result.checkpoint, weights_only=True)["global_step"] == 2
    assert any(level == "warning" and "disk full" in message for level, message in reporter.logs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no temporary left behind


def test_checkpoint_writes_use_unique_temporaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed save leaves the previous checkpoint intact and no temporary behind."""
    from clay_core.train import atomic_save

    target = tmp_path / "model.ckpt"
    atomic_save({"step": torch.tensor(1)}, target)

    def failing_save(obj, path):  # type: ignore[no-untyped-def]
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"step": torch.tensor(2)}, target)
    monkeypatch.undo()
    assert int(torch.load(target, weights_only=True)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]
