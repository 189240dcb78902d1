"""SatCLIP location encoder: float64 parity with the original code (fixture satclip_l10_micro), the
official .ckpt layout, an independent check of the exact L=40 basis (orthonormality by exact quadrature), and
the stored official "analytic" basis (15-digit sympy constants) against the exact one and spec/satclip.md."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from clay_core.checkpoints import read_checkpoint
from clay_core.errors import ClayInputError
from clay_core.models import build_preset, load_model
from clay_core.models.satclip import (
    SatCLIPFamily,
    SatCLIPLocationModel,
    analytic_table,
    satclip_embed_lonlat,
    spherical_harmonics,
)
from tests.helpers.parity import parity_fixture, parity_reference

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def satclip_dir(shared_fixtures: Path) -> Path:
    return parity_fixture("satclip_l10_micro")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return parity_reference("satclip_l10_micro")


@pytest.fixture(scope="module")
def model(satclip_dir: Path) -> SatCLIPLocationModel:
    loaded = load_model(satclip_dir / "checkpoint.ckpt", device="cpu")
    assert isinstance(loaded, SatCLIPLocationModel)
    return loaded


def test_checkpoint_is_recognised_and_keeps_float64_weights(model: SatCLIPLocationModel, satclip_dir: Path) -> None:
    assert model.family == "satclip"
    config = model.config
    assert (config.legendre_polys, config.hidden, config.num_hidden_layers, config.embed_dim) == (10, 512, 2, 256)
    assert sum(p.numel() for p in model.parameters()) == 445_696  # spec A.2 for L=10
    state = read_checkpoint(satclip_dir / "checkpoint.ckpt").state_dict
    for name, tensor in model.nnet.state_dict().items():
        assert tensor.dtype == torch.float64
        assert torch.equal(tensor, state[f"model.location.nnet.{name}"])  # bit-exact, never via float32
    assert not any("visual" in name for name, _ in model.named_parameters())


def test_harmonics_and_embeddings_match_the_reference(model: SatCLIPLocationModel, reference) -> None:
    coords = torch.from_numpy(reference["coords_lonlat_deg"])
    features = model.features(coords)
    assert features.dtype == torch.float64 and features.shape == (500, 100)
    assert np.abs(features.numpy() - reference["sh_features"]).max() < TOLERANCE
    with torch.no_grad():
        embedding = model.encode({"coords": coords})
    assert embedding.dtype == torch.float64
    assert np.abs(embedding.numpy() - reference["embedding"]).max() < TOLERANCE


def test_satclip_embed_lonlat_is_the_same_through_the_pipeline_function(satclip_dir: Path, reference) -> None:
    lonlat = reference["coords_lonlat_deg"]
    out = satclip_embed_lonlat(lonlat, satclip_dir / "checkpoint.ckpt", batch_size=128)
    assert out.shape == (500, 256) and out.dtype == np.float64
    assert np.abs(out - reference["embedding"]).max() < TOLERANCE
    assert satclip_embed_lonlat(np.zeros((0, 2)), satclip_dir / "checkpoint.ckpt").shape == (0, 256)
    with pytest.raises(ClayInputError, match="degrees"):
        satclip_embed_lonlat(np.array([[500000.0, 5800000.0]]), satclip_dir / "checkpoint.ckpt")


def test_embed_and_prepare_follow_the_model_interface(model: SatCLIPLocationModel, reference) -> None:
    lonlat = reference["coords_lonlat_deg"][:8]
    batch = model.prepare(None, (), lonlat, None)
    embedded = model.embed(batch, "location")
    assert embedded.dtype == torch.float32 and embedded.shape == (8, 256)
    assert np.abs(embedded.numpy() - reference["embedding"][:8]).max() < 1e-5
    assert model.filled_bands(("B02",)) == ()
    meta = model.metadata()
    assert meta["family"] == "satclip" and meta["legendre_polys"] == 10 and meta["embedding_shape"] == [256]


def _gauss_sphere_grid(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) nodes and weights that integrate polynomials of degree < 2*degree on the sphere exactly."""
    nodes, weights = np.polynomial.legendre.leggauss(degree)  # in cos θ
    lat = np.degrees(np.arcsin(-nodes))  # θ measured from the south pole: cos θ = -sin(lat)
    lon = (np.arange(2 * degree) + 0.5) * 360.0 / (2 * degree) - 180.0
    grid_lat, grid_lon = np.meshgrid(lat, lon, indexing="ij")
    grid_w = np.repeat(weights[:, None], 2 * degree, axis=1) * (2 * math.pi / (2 * degree))
    return np.stack([grid_lon.ravel(), grid_lat.ravel()], axis=1), grid_w.ravel()


@pytest.mark.parametrize("degrees", [10, 40])
def test_closed_form_basis_is_orthonormal_and_exact_differs_by_the_documented_factors(degrees: int) -> None:
    points, weights = _gauss_sphere_grid(degrees + 1)
    closed = spherical_harmonics(torch.from_numpy(points), degrees, "closed-form").numpy()
    gram = closed.T @ (closed * weights[:, None])
    assert np.abs(gram - np.eye(degrees * degrees)).max() < 1e-10
    analytic = spherical_harmonics(torch.from_numpy(points), degrees, "exact").numpy()
    factors = np.array(
        [math.pi if m == 0 else (-1.0) ** m for degree in range(degrees) for m in range(-degree, degree + 1)]
    )
    assert np.abs(analytic - closed * factors).max() < 1e-12


def _latitude_band_points(low: float, high: float) -> torch.Tensor:
    lat = np.linspace(low, high, 40)
    lon = np.linspace(-180.0, 180.0, 9)
    grid_lat, grid_lon = np.meshgrid(np.concatenate([lat, -lat]), lon, indexing="ij")
    return torch.from_numpy(np.stack([grid_lon.ravel(), grid_lat.ravel()], axis=1))


def test_official_basis_matches_the_exact_one_where_the_spec_says_it_does() -> None:
    # Spec A.2: the 15-digit expressions equal the exact basis to ~1e-12 for L=10, and to <= 4e-8 below 30°
    # for L=40; above 60° they drift by up to ~0.6 (what the L=40 weights were trained with).
    everywhere = _latitude_band_points(0.0, 90.0)
    assert np.abs(spherical_harmonics(everywhere, 10) - spherical_harmonics(everywhere, 10, "exact")).max() < 1e-11
    low = _latitude_band_points(0.0, 29.9)
    assert (spherical_harmonics(low, 40) - spherical_harmonics(low, 40, "exact")).abs().max() < 1e-7
    high = _latitude_band_points(60.0, 89.0)
    drift = (spherical_harmonics(high, 40) - spherical_harmonics(high, 40, "exact")).abs().max()
    assert 0.1 < drift < 1.0


def _stored_zonal_polynomial_exactly(degree: int, x: float) -> float:
    """The stored (degree, 0) expression evaluated in exact rational arithmetic (no float64 cancellation)."""
    table = analytic_table()
    index = degree * degree + degree
    start, stop = table.feature_start[index], table.feature_start[index + 1]
    assert table.factor_kind[start:stop].tolist() == [2]  # zonal: one expanded polynomial in x = cos θ
    poly = int(table.factor_value[start])
    span = slice(table.poly_start[poly], table.poly_start[poly + 1])
    exact_x = Fraction(x)
    total = sum(
        Fraction(float(c)) * exact_x ** int(k)
        for c, k in zip(table.poly_coefficient[span], table.poly_power[span], strict=True)
    )
    return float(total)


def test_official_l39_zonal_value_at_70n_is_the_documented_one() -> None:
    point = torch.tensor([[0.0, 70.0]], dtype=torch.float64)
    zonal_39 = 39 * 39 + 39
    exact = spherical_harmonics(point, 40, "exact")[0, zonal_39].item()
    official = spherical_harmonics(point, 40)[0, zonal_39].item()
    x = math.cos(math.radians(70.0 + 90.0))
    assert round(exact, 4) == -1.5554  # spec A.2 "true value"
    assert round(_stored_zonal_polynomial_exactly(39, x), 4) == -1.6597  # spec A.2 "from the formula"
    # float64 evaluation (as the official code runs it) adds cancellation noise of ~1e-3 (spec A.2 part b).
    assert abs(official - -1.6597) < 1e-3


def test_official_basis_refuses_degrees_beyond_the_stored_table() -> None:
    with pytest.raises(ClayInputError, match="harmonics='exact'"):
        spherical_harmonics(torch.zeros((1, 2), dtype=torch.float64), 41)
    assert spherical_harmonics(torch.zeros((1, 2), dtype=torch.float64), 41, "exact").shape == (1, 41 * 41)


def test_l40_preset_is_finite_at_the_poles_and_extends_l10() -> None:
    model = build_preset("satclip-l40")
    assert sum(p.numel() for p in model.parameters()) == 1_213_696  # spec A.2 for L=40
    coords = torch.tensor([[0.0, 90.0], [123.4, -90.0], [-180.0, 89.9999], [12.6045, 52.4912]], dtype=torch.float64)
    features = model.features(coords)
    assert torch.isfinite(features).all() and features.shape == (4, 1600)
    assert torch.equal(features[:, :100], spherical_harmonics(coords, 10))
    zonal = [degree * degree + degree for degree in range(40)]
    non_zonal = [i for i in range(1600) if i not in zonal]
    assert features[:2, non_zonal].abs().max() == 0  # exactly 0 at the poles for m != 0
    assert torch.isfinite(model.encode({"coords": coords})).all()


def test_family_reads_either_alias_and_refuses_other_encoders() -> None:
    family = SatCLIPFamily()
    weight = torch.randn(4, 9, dtype=torch.float64)
    state = {
        "model.nnet.layers.0.weight": weight,
        "model.nnet.layers.0.bias": torch.zeros(4, dtype=torch.float64),
        "model.nnet.last_layer.weight": torch.zeros(2, 4, dtype=torch.float64),
        "model.nnet.last_layer.bias": torch.zeros(2, dtype=torch.float64),
        "model.visual.conv1.weight": torch.zeros(1),
    }
    assert family.recognise(state.keys(), {})
    config = family.config_from_checkpoint(state, {"legendre_polys": 3}, {})
    assert (config.legendre_polys, config.hidden, config.num_hidden_layers, config.embed_dim) == (3, 4, 1, 2)
    assert set(family.select_weights(state)) == {
        "nnet.layers.0.weight",
        "nnet.layers.0.bias",
        "nnet.last_layer.weight",
        "nnet.last_layer.bias",
    }
    with pytest.raises(ClayInputError, match="legendre_polys"):
        family.config_from_checkpoint(state, {"legendre_polys": 10}, {})
    with pytest.raises(ClayInputError, match="only 'sphericalharmonics'"):
        family.config_from_checkpoint(state, {"le_type": "sphere"}, {})
    assert not family.recognise({"model.encoder.cls_token"}, {})
