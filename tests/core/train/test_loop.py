"""The training loop: the loss drops, checkpoints load everywhere, --resume is exact, bad runs are refused."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from clay_core.errors import ClayInputError
from clay_core.models import load_model
from clay_core.train import train
from tests.helpers.training import OFFICIAL_HPARAMS, TINY_MODEL, SyntheticChips, tiny_settings


def test_loss_drops_and_checkpoint_loads(tmp_path: Path) -> None:
    result = train(tiny_settings(tmp_path, steps=40, batch_size=4, checkpoint_every=20))
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
    settings = tiny_settings(tmp_path, steps=2, model_overrides={**TINY_MODEL, "band_groups": s2_groups})
    result = train(settings)
    assert np.isfinite(result.losses).all()
    model = load_model(result.checkpoint, device="cpu")
    assert model.config.band_groups == s2_groups
    assert model.filled_bands(SyntheticChips.bands) == ()
    assert model.filled_bands(("B02", "B03", "B04")) == ("B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    source = SyntheticChips(count=2, size=32)
    chips = [source.read(record) for record in source.records()]
    batch = model.prepare(
        np.stack([chip.pixels for chip in chips]),
        source.bands,
        [chip.record.center_lonlat for chip in chips],
        [chip.record.date for chip in chips],
    )
    assert tuple(model.embed(batch, "group").shape) == (2, 4, 4, 4, 32)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = train(tiny_settings(tmp_path, "straight.ckpt", steps=6))
    train(tiny_settings(tmp_path, "split.ckpt", steps=3))
    resumed = train(tiny_settings(tmp_path, "split.ckpt", steps=6, resume=True))
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
    result = train(tiny_settings(tmp_path, steps=3, accumulate=2, restart_period=2, restart_mult=1))
    raw = torch.load(result.checkpoint, weights_only=True)
    state = raw["clay_train"]
    assert state["data"]["samples_per_rank"] == 3 * 2 * 2  # steps x accumulate x batch
    # v0 quirk: eta_min = 10 x lr, so within a cycle the lr rises from lr towards 10 x lr, then restarts.
    assert state["scheduler"]["T_cur"] == 1 and state["scheduler"]["eta_min"] == pytest.approx(1e-2)
    assert state["scheduler"]["_last_lr"][0] == pytest.approx(1e-3 + (1e-2 - 1e-3) * 0.5)


def test_existing_output_and_missing_resume_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ClayInputError, match="nothing to resume"):
        train(tiny_settings(tmp_path, "absent.ckpt", resume=True))
    (tmp_path / "taken.ckpt").write_bytes(b"keep me")
    with pytest.raises(ClayInputError, match="--overwrite"):
        train(tiny_settings(tmp_path, "taken.ckpt"))
    assert (tmp_path / "taken.ckpt").read_bytes() == b"keep me"
    with pytest.raises(ClayInputError, match="smaller"):
        train(tiny_settings(tmp_path, "small.ckpt", sources=[SyntheticChips(size=16)]))
