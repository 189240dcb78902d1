"""Clay v0 MAE parity against the fixture computed by the original Clay code (clay_v0_micro, MAE section)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clay_core.checkpoints import read_checkpoint
from clay_core.models.clay_v0 import ClayV0Config, ClayV0Family
from clay_core.models.clay_v0_mae import (
    ClayV0MAE,
    mask_from_indices,
    patchify,
    random_mask,
    v0_reconstruction_loss,
)
from tests.helpers.parity import parity_fixture, parity_reference

REFERENCE_LOSS = 1.3628733  # the fixture's `mae_loss`, quoted in its README
V0_GROUPS = ClayV0Config().band_groups  # the six v0 band groups (rgb, rededge, nir, swir, sar, dem)


@pytest.fixture(scope="module")
def micro() -> dict:
    contents = read_checkpoint(parity_fixture("clay_v0_micro") / "checkpoint.ckpt")
    config = ClayV0Family().config_from_checkpoint(contents.state_dict, contents.hyper_parameters, {})
    mae = ClayV0MAE(config)
    mae.load_state_dict({key[len("model.") :]: value for key, value in contents.state_dict.items()}, strict=True)
    mae.eval()
    return {"mae": mae, "ref": parity_reference("clay_v0_micro"), "keys": set(contents.state_dict), "config": config}


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def test_state_dict_keys_match_the_official_file(micro: dict) -> None:
    assert set(micro["mae"].lightning_state_dict()) == micro["keys"]


def test_mask_matrix_from_fixture_indices(micro: dict) -> None:
    ref = micro["ref"]
    mask = mask_from_indices(_tensor(ref["mae_masked_indices"]), _tensor(ref["mae_unmasked_indices"]), 6, 64)
    np.testing.assert_array_equal(mask.matrix.numpy(), ref["mae_masked_matrix"])


def test_random_mask_reproduces_reference_noise_ranking(micro: dict) -> None:
    # The reference drew torch.randn((2, 384)) right after torch.manual_seed(1003).
    ref = micro["ref"]
    mask = random_mask(2, 6, 64, 0.75, torch.Generator().manual_seed(1003))
    np.testing.assert_array_equal(mask.masked.numpy(), ref["mae_masked_indices"])
    np.testing.assert_array_equal(mask.unmasked.numpy(), ref["mae_unmasked_indices"])
    assert mask.masked.shape == (2, 288) and mask.unmasked.shape == (2, 96)
    assert float(mask.matrix.sum()) == 2 * 288


def test_decoder_parity(micro: dict) -> None:
    ref = micro["ref"]
    with torch.no_grad():
        pixels = micro["mae"].decoder(_tensor(ref["mae_encoder_output"]), _tensor(ref["mae_unmasked_indices"]))
    assert pixels.shape == (2, 13, 64, 256)
    np.testing.assert_allclose(pixels.numpy(), ref["mae_decoder_pixels"], atol=2e-5, rtol=0)


def test_loss_parity_from_reference_decoder_output(micro: dict) -> None:
    ref = micro["ref"]
    loss = v0_reconstruction_loss(
        _tensor(ref["pixels"].astype(np.float32)),
        _tensor(ref["mae_decoder_pixels"]),
        _tensor(ref["mae_masked_matrix"]),
        micro["config"].band_groups,
        16,
    )
    assert float(ref["mae_loss"]) == pytest.approx(REFERENCE_LOSS, abs=1e-7)
    assert float(loss) == pytest.approx(float(ref["mae_loss"]), rel=1e-6)


def test_end_to_end_mae_parity(micro: dict) -> None:
    """Encoder with the fixture's mask -> decoder -> loss, i.e. the reference `CLAY.forward`."""
    ref = micro["ref"]
    pixels = _tensor(ref["pixels"].astype(np.float32))
    latlon, timestep = _tensor(ref["latlon"]), _tensor(ref["timestep"])
    masked, unmasked = _tensor(ref["mae_masked_indices"]), _tensor(ref["mae_unmasked_indices"])
    mae = micro["mae"]
    with torch.no_grad():
        encoded = mae.encoder(pixels, latlon, timestep, unmasked_indices=unmasked)
        loss = mae(pixels, latlon, timestep, masked, unmasked)
    np.testing.assert_allclose(encoded.numpy(), ref["mae_encoder_output"], atol=2e-5, rtol=0)
    assert float(loss) == pytest.approx(float(ref["mae_loss"]), rel=1e-5)


def test_loss_keeps_v0_channel_order_quirk() -> None:
    """Output channel c is scored against input band c; group i averages over its *input* band indices.

    A prediction that is perfect except in channel 6 (B08, the nir group's input band) costs only tokens
    masked in the nir group: that is where v0 charges the rededge head's 4th output."""
    cube = torch.randn(1, 13, 16, 16)
    predicted = patchify(cube, 8).clone()
    predicted[:, 6] += 1.0  # error of exactly 1 in every pixel of channel 6
    only_nir = torch.zeros(1, 6, 4)
    only_nir[:, 2] = 1.0  # mask only the nir group's tokens
    assert float(v0_reconstruction_loss(cube, predicted, only_nir, V0_GROUPS, 8)) == pytest.approx(1.0)
    only_rededge = torch.zeros(1, 6, 4)
    only_rededge[:, 1] = 1.0
    assert float(v0_reconstruction_loss(cube, predicted, only_rededge, V0_GROUPS, 8)) == pytest.approx(0.0)


def test_loss_of_a_band_subset_scores_the_bands_it_uses() -> None:
    """A model with only the four S2 groups predicts 10 channels, scored against bands 0..9 (same rule);
    the filled SAR/DEM bands (11..13) never enter the loss."""
    groups = (("rgb", (2, 1, 0)), ("rededge", (3, 4, 5, 7)), ("nir", (6,)), ("swir", (8, 9)))
    cube = torch.randn(1, 13, 16, 16)
    cube[:, 10:] = 99.0  # would dominate any loss that read them
    predicted = patchify(cube[:, :10], 8).clone()
    predicted[:, 8] += 2.0  # channel 8 = B11, a swir input band: error 4 per pixel, half the swir group
    swir_masked = torch.zeros(1, 4, 4)
    swir_masked[:, 3] = 1.0
    assert float(v0_reconstruction_loss(cube, predicted, swir_masked, groups, 8)) == pytest.approx(2.0)
    rgb_masked = torch.zeros(1, 4, 4)
    rgb_masked[:, 0] = 1.0
    assert float(v0_reconstruction_loss(cube, predicted, rgb_masked, groups, 8)) == pytest.approx(0.0)


def test_visible_loss_weight_is_opt_in() -> None:
    """Default: visible tokens cost nothing (v0). With weight w they count w times a masked token."""
    cube = torch.randn(1, 13, 16, 16)
    predicted = patchify(cube, 8).clone()
    predicted[:, 0] += 1.0  # B02: error 1 in one of the rgb group's three bands -> 1/3 per rgb token
    only_nir = torch.zeros(1, 6, 4)
    only_nir[:, 2] = 1.0  # rgb tokens are all visible
    groups = V0_GROUPS
    assert float(v0_reconstruction_loss(cube, predicted, only_nir, groups, 8)) == pytest.approx(0.0)
    # weight 1: all 24 tokens count equally; the 4 rgb tokens cost 1/3 each
    assert float(v0_reconstruction_loss(cube, predicted, only_nir, groups, 8, 1.0)) == pytest.approx(4 / 3 / 24)
    # weight 0.5: denominator 4 masked + 0.5 x 20 visible
    assert float(v0_reconstruction_loss(cube, predicted, only_nir, groups, 8, 0.5)) == pytest.approx(0.5 * 4 / 3 / 14)


def test_patchify_layout() -> None:
    cube = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    patches = patchify(cube, 2)  # [1, 2, 4, 4]: l = row*2 + col, pixels row-major
    assert patches[0, 0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]
    assert patches[0, 1, 2].tolist() == [24.0, 25.0, 28.0, 29.0]


def test_demo_preset_loads_the_shipped_weights() -> None:
    import datetime

    from clay_core.checkpoints import file_sha256
    from clay_core.models import load_model
    from clay_core.models.clay_v0_mae import DEMO_CHECKPOINT, DEMO_CONFIG, DEMO_PRESET

    assert DEMO_CHECKPOINT.is_file(), "models/clay-v0-demo.ckpt is part of the repository"
    model = load_model(DEMO_PRESET, device="cpu")
    assert model.checkpoint_sha256 == file_sha256(DEMO_CHECKPOINT)
    for field in ("image_size", "patch_size", "dim", "depth", "heads", "dim_head", "mlp_ratio"):
        assert getattr(model.config, field) == getattr(DEMO_CONFIG, field), field
    raw = torch.load(DEMO_CHECKPOINT, weights_only=True)
    encoder = {f"model.encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    assert all(torch.equal(value, raw["state_dict"][key]) for key, value in encoder.items())
    pixels = np.full((1, 10, 128, 128), 1500.0, dtype=np.float32)
    bands = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    batch = model.prepare(pixels, bands, [[12.6, 52.5]], [datetime.date(2017, 2, 16)])
    embedding = model.embed(batch, "mean")
    assert embedding.shape == (1, 128) and torch.isfinite(embedding).all()
