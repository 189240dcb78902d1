"""Clay v0 encoder parity with the original code (micro fixture), through the public API only."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from clay_core.errors import ClayInputError
from clay_core.models import load_model
from clay_core.models.clay_v0 import ClayV0Config, ClayV0Model, encode_dates, encode_latlon, token_encoding

TOLERANCE = 1e-4


def _batch(reference: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {
        "pixels": torch.from_numpy(reference["pixels"].astype(np.float32)),
        "latlon": torch.from_numpy(reference["latlon"]),
        "timestep": torch.from_numpy(reference["timestep"]),
    }


def _max_abs(actual: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(actual.shape) == expected.shape
    return float((actual.detach().float() - torch.from_numpy(expected)).abs().max())


@pytest.fixture(scope="module")
def micro_model(v0_micro_checkpoint: Path) -> ClayV0Model:
    return load_model(v0_micro_checkpoint, device="cpu")


def test_config_comes_from_the_checkpoint(micro_model: ClayV0Model) -> None:
    config = micro_model.config
    assert (config.image_size, config.patch_size, config.dim, config.depth) == (128, 16, 64, 2)
    assert (config.heads, config.dim_head, config.mlp_ratio) == (2, 32, 2.0)
    assert [name for name, _ in config.band_groups] == ["rgb", "rededge", "nir", "swir", "sar", "dem"]
    assert micro_model.family == "clay-v0" and not micro_model.training
    assert micro_model.checkpoint_sha256 == "231ea66f0e65c9bc27302879d70b9e9d9b1404226150be385fa7f6959888c6ec"


@pytest.mark.parametrize("fused", [True, False], ids=["fused-inference-path", "module-path"])
def test_transformer_input_matches_reference(micro_model: ClayV0Model, v0_micro_reference: dict, fused: bool) -> None:
    batch = _batch(v0_micro_reference)
    micro_model.encoder.fused_input = fused
    try:
        with torch.inference_mode():
            tokens = micro_model.encoder.transformer_input(batch["pixels"], batch["latlon"], batch["timestep"])
            output = micro_model.encode(batch)
    finally:
        micro_model.encoder.fused_input = True
    assert _max_abs(tokens, v0_micro_reference["dbg_transformer_input"]) < TOLERANCE
    assert _max_abs(output, v0_micro_reference["encoder_output"]) < TOLERANCE


def test_training_path_has_gradients_and_matches(micro_model: ClayV0Model, v0_micro_reference: dict) -> None:
    batch = _batch(v0_micro_reference)
    tokens = micro_model.encoder(batch["pixels"], batch["latlon"], batch["timestep"])  # autograd on
    assert tokens.requires_grad
    assert _max_abs(tokens, v0_micro_reference["encoder_output"]) < TOLERANCE
    tokens.mean().backward()
    assert micro_model.encoder.patch_embedding["rgb"].proj.weight.grad is not None
    micro_model.zero_grad(set_to_none=True)


def test_encode_matches_reference(micro_model: ClayV0Model, v0_micro_reference: dict) -> None:
    with torch.inference_mode():
        tokens = micro_model.encode(_batch(v0_micro_reference))
    assert _max_abs(tokens, v0_micro_reference["encoder_output"]) < TOLERANCE


@pytest.mark.parametrize("level", ["mean", "patch", "group"])
def test_every_level_matches_reference(micro_model: ClayV0Model, v0_micro_reference: dict, level: str) -> None:
    with torch.inference_mode():
        pooled = micro_model.pool(micro_model.encode(_batch(v0_micro_reference)), level)
    assert _max_abs(pooled, v0_micro_reference[f"embeddings_{level}"]) < TOLERANCE
    embedded = micro_model.embed(_batch(v0_micro_reference), level)
    assert embedded.dtype == torch.float32 and embedded.device.type == "cpu"
    assert tuple(embedded.shape[1:]) == micro_model.embedding_shape(level)
    assert _max_abs(embedded, v0_micro_reference[f"embeddings_{level}"]) < TOLERANCE


def test_mae_path_returns_visible_tokens_in_given_order(micro_model: ClayV0Model, v0_micro_reference: dict) -> None:
    batch = _batch(v0_micro_reference)
    visible = torch.from_numpy(v0_micro_reference["mae_unmasked_indices"])
    with torch.inference_mode():
        tokens = micro_model.encoder(batch["pixels"], batch["latlon"], batch["timestep"], unmasked_indices=visible)
    assert _max_abs(tokens, v0_micro_reference["mae_encoder_output"]) < TOLERANCE


def test_prepare_reproduces_reference_inputs(micro_model: ClayV0Model, v0_micro_reference: dict) -> None:
    bands = micro_model.input_bands
    means = micro_model.sensor.means(bands)[None, :, None, None]
    stds = micro_model.sensor.stds(bands)[None, :, None, None]
    normalised = v0_micro_reference["pixels"].astype(np.float32)
    raw = normalised * stds + means
    dates = [datetime.date.fromisoformat(str(text)) for text in v0_micro_reference["dates"]]
    batch = micro_model.prepare(raw, bands, v0_micro_reference["raw_lonlat_deg"], dates)
    assert float((batch["pixels"] - torch.from_numpy(normalised)).abs().max()) < 1e-3
    np.testing.assert_allclose(batch["latlon"].numpy(), v0_micro_reference["latlon"], atol=1e-6)
    np.testing.assert_allclose(batch["timestep"].numpy(), v0_micro_reference["timestep"], atol=1e-6)
    embedded = micro_model.embed(batch, "mean")
    assert _max_abs(embedded, v0_micro_reference["embeddings_mean"]) < 1e-3


def test_prepare_fills_nodata_and_absent_bands_with_the_mean(micro_model: ClayV0Model) -> None:
    bands = ("B04", "B03", "B02", "B08")
    pixels = np.full((1, 4, 128, 128), 1000.0, dtype=np.float32)
    pixels[0, 0, :10, :10] = np.nan
    batch = micro_model.prepare(pixels, bands, [[12.6, 52.5]], [datetime.date(2020, 6, 1)])
    normalised = batch["pixels"]
    assert normalised.shape == (1, 13, 128, 128) and torch.isfinite(normalised).all()
    assert float(normalised[0, 2, :10, :10].abs().max()) == 0.0  # B04 is index 2; NaN -> mean -> 0
    b04 = micro_model.sensor.band("B04")
    assert float(normalised[0, 2, 50, 50]) == pytest.approx((1000.0 - b04.mean) / b04.std, rel=1e-6)
    assert float(normalised[0, 12].abs().max()) == 0.0  # DEM absent -> 0
    assert micro_model.filled_bands(bands) == ("B05", "B06", "B07", "B8A", "B11", "B12", "VH", "VV", "DEM")


def test_prepare_rejects_mismatched_inputs(micro_model: ClayV0Model) -> None:
    pixels = np.zeros((2, 3, 128, 128), dtype=np.float32)
    with pytest.raises(ClayInputError, match="band names"):
        micro_model.prepare(pixels, ("B02", "B03"), [[0, 0], [0, 0]], [datetime.date(2020, 1, 1)] * 2)
    with pytest.raises(ClayInputError, match="dates"):
        micro_model.prepare(pixels, ("B02", "B03", "B04"), [[0, 0], [0, 0]], [datetime.date(2020, 1, 1)])
    wrong_size = micro_model.prepare(
        np.zeros((1, 3, 64, 64), np.float32), ("B02", "B03", "B04"), [[0, 0]], [datetime.date(2020, 1, 1)]
    )
    with pytest.raises(ClayInputError, match="chip"):
        micro_model.embed(wrong_size)


def test_encodings_follow_spec_1_4() -> None:
    latlon = encode_latlon(np.array([[90.0, 30.0], [-180.0, -90.0]]))
    np.testing.assert_allclose(latlon[:, 0], [0.5, -1.0], atol=1e-7)  # sin(lat)
    np.testing.assert_allclose(latlon[:, 1], [0.0, np.pi / 2 + np.pi - 2 * np.pi], atol=1e-6)  # pi/2 - lon wrapped
    steps = encode_dates([datetime.date(2012, 1, 1), datetime.date(2022, 12, 31)])
    np.testing.assert_allclose(steps[0], [np.pi / 2] * 3, atol=1e-6)
    assert steps[1, 1] == pytest.approx(np.pi / 2, abs=1e-6) and steps[1, 2] == pytest.approx(np.pi / 2, abs=1e-6)


def test_other_chip_and_patch_sizes_give_matching_grids() -> None:
    config = ClayV0Config(image_size=64, patch_size=16, dim=32, depth=1, heads=2, dim_head=16, mlp_ratio=2)
    model = ClayV0Model(config).eval()
    batch = model.prepare(
        np.zeros((2, 13, 64, 64), np.float32), model.input_bands, [[0, 0], [1, 1]], [datetime.date(2020, 1, 1)] * 2
    )
    with torch.inference_mode():
        tokens = model.encode(batch)
    assert tokens.shape == (2, 6 * 16 + 2, 32)
    assert model.pool(tokens, "group").shape == (2, 6, 4, 4, 32)
    assert model.pool(tokens, "patch").shape == (2, 4, 4, 32)


def test_token_encoding_layout() -> None:
    config = ClayV0Config(image_size=64, patch_size=16, dim=32, depth=0)
    encoding = token_encoding(config)
    assert encoding.shape == (6, 16, 32)
    # first half depends only on the patch position, second half only on the group
    assert torch.equal(encoding[0, :, :16], encoding[5, :, :16])
    assert torch.equal(encoding[3, 0, 16:], encoding[3, 15, 16:])
    assert float(encoding[0, 0, 4]) == 1.0  # cos(x * w) at x = 0
    fp16 = token_encoding(dataclasses.replace(config, table_dtype="float16"))
    assert 0 < float((fp16 - encoding).abs().max()) < 1e-3


def test_invalid_config_is_refused() -> None:
    with pytest.raises(ClayInputError, match="multiple of patch_size"):
        ClayV0Config(image_size=100, patch_size=32)


def test_metadata_describes_the_embedding(micro_model: ClayV0Model) -> None:
    meta = micro_model.metadata("group")
    assert meta["family"] == "clay-v0" and meta["level"] == "group"
    assert meta["embedding_shape"] == [6, 8, 8, 64]
    assert meta["checkpoint_sha256"] == micro_model.checkpoint_sha256
    assert meta["bands"][10:] == ["VH", "VV", "DEM"] and meta["wavelengths_um"][0] == 0.490
    assert meta["normalization"]["mean"][0] == 1369.03 and meta["chip_size"] == 128 and meta["patch_size"] == 16
    assert meta["band_groups"]["rgb"] == ["B04", "B03", "B02"]
    with pytest.raises(ClayInputError, match="level"):
        micro_model.metadata("cls")


def test_metadata_lists_all_input_bands_whatever_the_sources_give(micro_model: ClayV0Model) -> None:
    # v0 embeds its 13 bands always (missing ones are filled), so the sources' bands do not change the listing.
    given = micro_model.metadata("group", bands=("B04", "B03", "B02"))
    assert given["bands"] == list(micro_model.input_bands) and len(given["bands"]) == 13
    assert given == micro_model.metadata("group")


def test_memory_estimate_grows_with_batch(micro_model: ClayV0Model) -> None:
    one, four = micro_model.memory_estimate(1), micro_model.memory_estimate(4)
    assert one.weights_bytes == 4 * sum(p.numel() for p in micro_model.parameters())
    assert four.activations_bytes == 4 * one.activations_bytes
    assert four.total_bytes > one.total_bytes


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_mean_embeddings_match_fp32_on_cuda(v0_micro_checkpoint: Path, v0_micro_reference: dict) -> None:
    fp32 = load_model(v0_micro_checkpoint, device="cuda", precision="fp32")
    bf16 = load_model(v0_micro_checkpoint, device="cuda", precision="bf16")
    batch = _batch(v0_micro_reference)
    reference = fp32.embed(batch, "mean")
    assert _max_abs(reference, v0_micro_reference["embeddings_mean"]) < 1e-3
    cosine = torch.nn.functional.cosine_similarity(bf16.embed(batch, "mean"), reference, dim=1)
    assert float(cosine.min()) >= 0.999


def test_flop_count_matches_torch_flop_counter() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from clay_core.models.clay_v0 import encoder_flops

    config = ClayV0Config(image_size=64, patch_size=16, dim=32, depth=2, heads=2, dim_head=16, mlp_ratio=2)
    model = ClayV0Model(config).eval()
    batch = {"pixels": torch.zeros(3, 13, 64, 64), "latlon": torch.zeros(3, 2), "timestep": torch.zeros(3, 3)}
    # the fused CPU attention kernel has no FLOP formula: count it through the math backend
    with FlopCounterMode(display=False) as counter, torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        model.encode(batch)
    assert counter.get_total_flops() == 3 * encoder_flops(config)


def test_int8_quantisation_is_opt_in_and_close(v0_micro_checkpoint: Path, v0_micro_reference: dict) -> None:
    model = load_model(v0_micro_checkpoint, device="cpu", quantize="int8")
    assert model.quantization == "int8" and model.metadata()["precision"] == "fp32+int8"
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    assert isinstance(model.encoder.transformer.layers[0][1].net[1], DynamicQuantizedLinear)
    embedded = model.embed(_batch(v0_micro_reference), "mean")
    reference = torch.from_numpy(v0_micro_reference["embeddings_mean"])
    cosine = torch.nn.functional.cosine_similarity(embedded, reference, dim=1)
    assert float(cosine.min()) >= 0.99
    assert float((embedded - reference).abs().max()) > 0  # it really ran in int8
    with pytest.raises(ClayInputError, match="quantisation"):
        load_model(v0_micro_checkpoint, device="cpu", quantize="int4")
