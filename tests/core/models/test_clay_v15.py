"""Clay v1.5 encoder: parity with the reference code (fixture clay_v15_micro) through the public API,
checkpoint recognition, any-subset-of-bands inputs and per-platform normalisation."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from clay_core.errors import CheckpointError, ClayInputError
from clay_core.models import build_preset, load_model
from clay_core.models.clay_v15 import ClayV15Family, ClayV15Model, encoder_weights
from clay_core.sensors import SENTINEL2_L2A, get_sensor
from tests.helpers.parity import parity_fixture, parity_reference

TOLERANCE = 1e-4  # fp32 parity required by the issue; observed differences are ~1e-6
S2_ORDER = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


@pytest.fixture(scope="module")
def v15_dir() -> Path:
    return parity_fixture("clay_v15_micro")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return parity_reference("clay_v15_micro")


@pytest.fixture(scope="module")
def model(v15_dir: Path) -> ClayV15Model:
    loaded = load_model(v15_dir / "checkpoint.ckpt", device="cpu")
    assert isinstance(loaded, ClayV15Model)
    return loaded


def reference_batch(reference: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {
        "pixels": torch.from_numpy(reference["pixels"].astype(np.float32)),
        "time": torch.from_numpy(reference["time"]),
        "latlon": torch.from_numpy(reference["latlon"]),
        "gsd": torch.tensor(reference["gsd"]),
        "waves": torch.from_numpy(reference["waves"]),
    }


def raw_inputs(reference: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[datetime.datetime]]:
    """The fixture's normalised pixels back in raw DN, (lon, lat) chip centres and acquisition datetimes."""
    means = SENTINEL2_L2A.means(S2_ORDER)[None, :, None, None]
    stds = SENTINEL2_L2A.stds(S2_ORDER)[None, :, None, None]
    raw = reference["pixels"].astype(np.float32) * stds + means
    lonlat = reference["raw_latlon_deg"][:, ::-1].copy()  # the fixture stores (lat, lon)
    dates = [datetime.datetime.fromisoformat(str(text)) for text in reference["datetimes"]]
    return raw, lonlat, dates


def test_load_model_recognises_v15_and_reads_the_micro_config(model: ClayV15Model) -> None:
    config = model.config
    assert model.family == "clay-v1.5"
    assert (config.dim, config.depth, config.heads, config.dim_head, config.patch_size) == (64, 2, 2, 32, 8)
    assert config.mlp_ratio == 2.0
    assert sum(p.numel() for p in model.parameters()) == 1_245_824  # the 45 model.encoder.* tensors
    assert model.levels == ("cls", "patch") and model.default_level == "cls"
    assert model.checkpoint_sha256 == "610327d2c117625b5e421a9e3c06eb3d3a6ca1da82863d7410d3d2a4b6e154a4"
    assert not any("teacher" in name or "decoder" in name for name, _ in model.named_parameters())


def test_encode_matches_the_reference_encoder(model: ClayV15Model, reference: dict[str, np.ndarray]) -> None:
    batch = reference_batch(reference)
    with torch.no_grad():
        waves = model.patch_embedding.wave_features(batch["waves"])
        patches = model.patch_embedding(batch["pixels"], batch["waves"])
        tokens = model.encode(batch)
    assert np.abs(waves.numpy() - reference["dbg_waves_encoded"]).max() < TOLERANCE
    assert np.abs(patches.numpy() - reference["dbg_dynamic_embedding"]).max() < TOLERANCE
    assert tokens.shape == (2, 65, 64)
    assert np.abs(tokens.numpy() - reference["encoder_output"]).max() < TOLERANCE


def test_prepare_and_embed_reproduce_the_reference_from_raw_inputs(
    model: ClayV15Model, reference: dict[str, np.ndarray]
) -> None:
    raw, lonlat, dates = raw_inputs(reference)
    batch = model.prepare(raw, S2_ORDER, lonlat, dates, gsd_m=10.0)
    assert np.abs(batch["pixels"].numpy() - reference["pixels"].astype(np.float32)).max() < 1e-5
    assert np.abs(batch["time"].numpy() - reference["time"]).max() < 1e-6  # incl. ISO week 53
    assert np.abs(batch["latlon"].numpy() - reference["latlon"]).max() < 1e-6
    assert batch["gsd"].ndim == 0 and float(batch["gsd"]) == 10.0
    np.testing.assert_allclose(batch["waves"].numpy(), reference["waves"])
    cls = model.embed(batch, "cls")
    patch = model.embed(batch, "patch")
    assert cls.dtype == torch.float32 and cls.shape == (2, 64)
    assert np.abs(cls.numpy() - reference["cls_embedding"]).max() < TOLERANCE
    expected_patch = reference["encoder_output"][:, 1:, :].reshape(2, 8, 8, 64)  # index 1 + row*8 + col
    assert patch.shape == (2, 8, 8, 64)
    assert np.abs(patch.numpy() - expected_patch).max() < TOLERANCE


def test_any_subset_of_bands_embeds_without_filling(model: ClayV15Model, reference: dict[str, np.ndarray]) -> None:
    raw, lonlat, dates = raw_inputs(reference)
    four = ("B02", "B03", "B04", "B08")
    pixels = raw[:, [S2_ORDER.index(b) for b in four]]
    assert model.filled_bands(four) == ()
    batch = model.prepare(pixels, ("blue", "green", "red", "nir"), lonlat, dates)  # common names work too
    np.testing.assert_allclose(batch["waves"].numpy(), [0.493, 0.56, 0.665, 0.842], rtol=1e-6)
    assert batch["pixels"].shape == (2, 4, 64, 64)
    four_band = model.embed(batch, "cls")
    full = model.embed(model.prepare(raw, S2_ORDER, lonlat, dates), "cls")
    assert torch.isfinite(four_band).all()
    assert not torch.allclose(four_band, full, atol=1e-3)  # the wavelengths change the patch kernel
    meta = model.metadata("cls", bands=four)
    assert meta["bands"] == list(four) and meta["wavelengths_um"] == [0.493, 0.56, 0.665, 0.842]
    assert meta["platform"] == "sentinel-2-l2a" and meta["embedding_shape"] == [64]


def test_nodata_becomes_the_band_mean_and_bad_bands_are_refused(model: ClayV15Model) -> None:
    pixels = np.full((1, 2, 16, 16), np.nan, dtype=np.float32)
    pixels[0, 0, :8] = SENTINEL2_L2A.band("B04").mean
    batch = model.prepare(pixels, ("B04", "B08"), [[12.5, 52.3]], [datetime.date(2024, 6, 17)])
    assert torch.count_nonzero(batch["pixels"]) == 0
    with pytest.raises(ClayInputError, match="no known wavelength"):
        model.prepare(pixels, ("B04", "B01"), [[0.0, 0.0]], [None])
    with pytest.raises(ClayInputError, match="twice"):
        model.prepare(pixels, ("B04", "red"), [[0.0, 0.0]], [None])
    with pytest.raises(ClayInputError, match="multiple of the patch size"):
        model.prepare(pixels[..., :12], ("B04", "B08"), [[0.0, 0.0]], [None])


def test_unknown_time_and_place_encode_as_zeros(model: ClayV15Model) -> None:
    pixels = np.zeros((2, 1, 8, 8), dtype=np.float32)
    batch = model.prepare(pixels, ("B04",), [[np.nan, np.nan], [90.0, 0.0]], [None, datetime.date(2024, 1, 1)])
    assert batch["time"][0].abs().sum() == 0 and batch["latlon"][0].abs().sum() == 0
    # 2024-01-01 is ISO week 1, hour 0; (lon 90, lat 0) -> sin lon = 1
    np.testing.assert_allclose(
        batch["time"][1].numpy(), [np.sin(2 * np.pi / 52), np.cos(2 * np.pi / 52), 0, 1], atol=1e-6
    )
    np.testing.assert_allclose(batch["latlon"][1].numpy(), [0, 1, 1, 0], atol=1e-6)


def test_platform_override_uses_that_platforms_metadata(v15_dir: Path) -> None:
    naip = load_model(v15_dir / "checkpoint.ckpt", device="cpu", platform="naip")
    assert naip.sensor.name == "naip" and naip.input_bands == ("red", "green", "blue", "nir")
    pixels = np.full((1, 4, 16, 16), 110.16, dtype=np.float32)
    batch = naip.prepare(pixels, ("red", "green", "blue", "nir"), [[-100.0, 40.0]], [None], gsd_m=1.0)
    assert abs(float(batch["pixels"][0, 0].mean())) < 1e-6
    assert float(batch["gsd"]) == 1.0
    s1 = load_model(v15_dir / "checkpoint.ckpt", device="cpu", platform="sentinel-1-rtc")
    linear = np.full((1, 2, 8, 8), 0.1, dtype=np.float32)  # -10 dB
    batch = s1.prepare(linear, ("VV", "VH"), [[0.0, 0.0]], [None])
    expected = (-10.0 - get_sensor("sentinel-1-rtc").band("VV").mean) / get_sensor("sentinel-1-rtc").band("VV").std
    assert abs(float(batch["pixels"][0, 0, 0, 0]) - expected) < 1e-5
    with pytest.raises(ClayInputError, match="unknown platform"):
        load_model(v15_dir / "checkpoint.ckpt", device="cpu", platform="spot")


def test_presets_and_reference_key_layout(v15_dir: Path) -> None:
    from clay_core.checkpoints import read_checkpoint

    tiny = build_preset("clay-v1.5-tiny")
    assert (tiny.config.dim, tiny.config.depth, tiny.config.heads) == (192, 6, 4)
    fixture_keys = set(encoder_weights(read_checkpoint(v15_dir / "checkpoint.ckpt").state_dict))
    assert len(fixture_keys) == 45
    two_layers = build_preset("clay-v1.5-tiny", depth=2)
    assert set(two_layers.state_dict()) == fixture_keys  # same names as the reference, whatever the width
    assert tiny.embedding_shape("patch") == (32, 32, 192)
    tokens = tiny.encode(tiny.prepare(np.zeros((1, 3, 32, 32), np.float32), ("B02", "B03", "B04"), None, None))
    assert tokens.shape == (1, 1 + 16, 192)


def test_only_encoder_keys_are_selected_and_a_decoder_alone_is_refused() -> None:
    family = ClayV15Family()
    state = {
        "model.encoder.patch_embedding.weight_generator.weight_tokens": torch.zeros(1),
        "model.encoder.cls_token": torch.zeros(1),
        "model.teacher.cls_token": torch.zeros(1),
        "model.decoder.embed_to_pixels.weight_generator.weight_tokens": torch.zeros(1),
    }
    assert family.recognise(state.keys(), {})
    assert set(family.select_weights(state)) == {"patch_embedding.weight_generator.weight_tokens", "cls_token"}
    decoder_only = {k: v for k, v in state.items() if not k.startswith("model.encoder.")}
    assert not family.recognise(decoder_only.keys(), {})
    with pytest.raises(CheckpointError, match="no Clay v1/v1.5 encoder"):
        family.select_weights(decoder_only)


def test_memory_estimate_grows_with_batch_and_counts_half_precision_copies(model: ClayV15Model) -> None:
    import dataclasses

    parameters = sum(p.numel() for p in model.parameters())
    one, four = model.memory_estimate(1), model.memory_estimate(4)
    assert one.weights_bytes == 4 * parameters
    assert four.activations_bytes == 4 * one.activations_bytes and four.total_bytes > one.total_bytes
    model_plan = model.plan
    try:
        model.plan = dataclasses.replace(model_plan, precision="bf16")  # as on a CUDA GPU with native bf16
        assert model.memory_estimate(1).weights_bytes == 6 * parameters  # fp32 weights + their bf16 copies
    finally:
        model.plan = model_plan
