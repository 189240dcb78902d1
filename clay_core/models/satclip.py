"""SatCLIP location encoder: (lon, lat) in degrees -> a 256-d vector (spec/satclip.md, part A.2).

Spherical harmonics of degree l < L (L = 10 or 40) feed a SIREN; everything runs in float64, as the
released checkpoints do. Only the location branch is built: the image tower (`model.visual.*`) is
ignored and nothing is downloaded.

Conventions of the released checkpoints, reproduced on purpose:
- input columns are (lon, lat); φ = rad(lon + 180), θ = rad(lat + 90), so θ = 0 is the SOUTH pole;
- real harmonics with √2·N(l,|m|)·P_l^|m|(cos θ)·(cos mφ | sin |m|φ), no Condon–Shortley phase;
- the zonal (m = 0) terms are π times the orthonormal value (missing parentheses in SatCLIP's
  generator; the weights were trained with it);
- feature index l² + l + m; SIREN sin(30·x) first layer, sin(x) hidden layers, linear output.

Basis options (`SatCLIPConfig.harmonics`):
- "analytic" (default, what the checkpoints were trained with): SatCLIP's sympy-generated expressions, whose
  constants were printed with 15 significant digits. They are stored as numbers in
  `satclip_analytic_basis.npz` (made by scripts/generate_satclip_basis.py) and evaluated here with the same
  float64 operations in the same order, so no sympy is needed at run time. For L = 40 the rounding moves
  features above |lat| ~45° by up to ~0.6 from the exact basis (spec A.2); the weights expect that.
- "exact": the same conventions by a normalised three-term recurrence (equal to "analytic" to ~1e-12 for
  L = 10, the true basis for any L).
- "closed-form": SatCLIP's other option (Condon–Shortley phase, orthonormal m = 0), exact recurrence.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clay_core.errors import CheckpointError, ClayInputError
from clay_core.models.registry import (
    EmbeddingModel,
    ModelFamily,
    apply_overrides,
    register_family,
    register_preset,
)
from clay_core.sensors import Sensor

HARMONICS = ("analytic", "exact", "closed-form")
ANALYTIC_TABLE = Path(__file__).with_name("satclip_analytic_basis.npz")
FIRST_LAYER_W0 = 30.0
HIDDEN_W0 = 1.0

# No pixels: the "sensor" of a location encoder has no bands.
LOCATION_SENSOR = Sensor(name="location", bands=(), gsd_m=0.0, description="lon/lat in degrees (WGS84)")


@dataclass(frozen=True)
class SatCLIPConfig:
    legendre_polys: int = 10  # L: degrees 0..L-1, L² features
    hidden: int = 512  # `capacity` of the released checkpoints
    num_hidden_layers: int = 2
    embed_dim: int = 256
    harmonics: str = "analytic"  # official 15-digit expressions; "exact" recurrence; "closed-form" (CS, orthonormal)


# ------------------------------------------------------------------------------------------------
# Spherical harmonics
# ------------------------------------------------------------------------------------------------


def spherical_harmonics(lonlat_deg: torch.Tensor, degrees: int, harmonics: str = "analytic") -> torch.Tensor:
    """[N, 2] (lon, lat) degrees -> [N, degrees²] real spherical harmonics in SatCLIP's conventions."""
    coords = lonlat_deg.double()
    phi = torch.deg2rad(coords[:, 0] + 180.0)
    theta = torch.deg2rad(coords[:, 1] + 90.0)
    x = torch.cos(theta)
    if harmonics == "analytic":
        return _official_harmonics(x, phi, degrees)
    # sqrt((1-x)(1+x)) instead of sin θ: exactly 0 at the poles, like the reference's polynomials.
    s = torch.sqrt(torch.clamp((1.0 - x) * (1.0 + x), min=0.0))
    legendre = _normalised_legendre(x, s, degrees)  # {(l, m): N(l,m)·P_l^m(x)}, m >= 0, no CS phase
    closed_form = harmonics == "closed-form"
    # cos(mφ)/sin(mφ) once per order m; columns are gathered in a list and stacked once (column writes
    # into a row-major [N, L²] tensor are strided and were the bottleneck).
    cos_m = [torch.cos(m * phi) for m in range(degrees)]
    sin_m = [torch.sin(m * phi) for m in range(degrees)]
    columns: list[torch.Tensor] = []
    for degree in range(degrees):
        for m in range(-degree, degree + 1):
            order = abs(m)
            if m == 0:
                columns.append(legendre[(degree, 0)] * (1.0 if closed_form else math.pi))
                continue
            scale = math.sqrt(2.0) * ((-1.0) ** order if closed_form else 1.0)
            columns.append(scale * legendre[(degree, order)] * (cos_m[order] if m > 0 else sin_m[order]))
    return torch.stack(columns, dim=1)


# Factor kinds written by scripts/generate_satclip_basis.py.
_CONSTANT, _SINE_POWER, _POLYNOMIAL, _COS_PHI, _SIN_PHI = range(5)


@dataclass(frozen=True)
class AnalyticTable:
    """SatCLIP's printed expressions as numbers: per feature a left-to-right product of factors."""

    degrees: int
    feature_start: np.ndarray  # [L²+1] slices of factor_kind/factor_value per feature
    factor_kind: np.ndarray
    factor_value: np.ndarray  # constant | exponent p of (1 − x²) | polynomial index | multiple k of φ
    poly_start: np.ndarray  # slices of poly_coefficient/poly_power per polynomial
    poly_coefficient: np.ndarray  # signed, in the printed (= summation) order
    poly_power: np.ndarray


@functools.lru_cache(maxsize=1)
def analytic_table() -> AnalyticTable:
    try:
        with np.load(ANALYTIC_TABLE) as data:
            return AnalyticTable(
                degrees=int(data["degrees"]),
                **{
                    name: data[name]
                    for name in (
                        "feature_start",
                        "factor_kind",
                        "factor_value",
                        "poly_start",
                        "poly_coefficient",
                        "poly_power",
                    )
                },
            )
    except (OSError, KeyError, ValueError) as error:
        raise CheckpointError(
            f"SatCLIP basis table {ANALYTIC_TABLE} is missing or damaged ({error}); "
            "regenerate it with scripts/generate_satclip_basis.py"
        ) from error


def _official_harmonics(x: torch.Tensor, phi: torch.Tensor, degrees: int) -> torch.Tensor:
    """Evaluate the stored expressions with the same float64 operations, in the same order, as Python
    evaluates SatCLIP's generated source. At L = 40 the sums cancel terms of ~1e14, so order matters:
    products run left to right, polynomials are summed in printed order, powers use torch's pow."""
    table = analytic_table()
    if degrees > table.degrees:
        raise ClayInputError(
            f"the stored SatCLIP analytic basis covers L <= {table.degrees}, not L={degrees}; "
            "use harmonics='exact' or regenerate with scripts/generate_satclip_basis.py --degrees"
        )
    x_powers: dict[int, torch.Tensor] = {1: x}  # shared subexpressions: pure caching, same values
    sine_powers: dict[float, torch.Tensor] = {}
    azimuths: dict[tuple[int, float], torch.Tensor] = {}

    def x_power(power: int) -> torch.Tensor:
        if power not in x_powers:
            x_powers[power] = x**power
        return x_powers[power]

    def polynomial(index: int) -> torch.Tensor | float:
        start, stop = table.poly_start[index], table.poly_start[index + 1]
        total: torch.Tensor | float | None = None
        for coefficient, power in zip(
            table.poly_coefficient[start:stop].tolist(), table.poly_power[start:stop].tolist(), strict=True
        ):
            term = coefficient * x_power(power) if power else coefficient
            total = term if total is None else total + term
        assert total is not None
        return total

    def factor(kind: int, value: float) -> torch.Tensor | float:
        if kind == _CONSTANT:
            return value
        if kind == _POLYNOMIAL:
            return polynomial(int(value))
        if kind == _SINE_POWER:
            if value not in sine_powers:
                base = 1.0 - x_power(2)
                sine_powers[value] = base if value == 1.0 else base**value
            return sine_powers[value]
        key = (kind, value)
        if key not in azimuths:
            angle = phi if value == 1.0 else int(value) * phi
            azimuths[key] = torch.cos(angle) if kind == _COS_PHI else torch.sin(angle)
        return azimuths[key]

    columns: list[torch.Tensor] = []
    for index in range(degrees * degrees):
        start, stop = table.feature_start[index], table.feature_start[index + 1]
        product: torch.Tensor | float | None = None
        for kind, value in zip(
            table.factor_kind[start:stop].tolist(), table.factor_value[start:stop].tolist(), strict=True
        ):
            term = factor(kind, value)
            product = term if product is None else product * term
        assert product is not None
        columns.append(product if isinstance(product, torch.Tensor) else torch.full_like(x, product))
    return torch.stack(columns, dim=1)


def _normalised_legendre(x: torch.Tensor, s: torch.Tensor, degrees: int) -> dict[tuple[int, int], torch.Tensor]:
    """N(l,m)·P_l^m(x) for 0 <= m <= l < degrees by the stable normalised recurrence (no CS phase).

    N(l,m) = sqrt((2l+1)/(4π)·(l−m)!/(l+m)!). Normalising inside the recurrence keeps L = 40 finite
    (the raw P_l^m and factorials overflow float64 long before)."""
    values: dict[tuple[int, int], torch.Tensor] = {}
    diagonal = torch.full_like(x, math.sqrt(1.0 / (4.0 * math.pi)))
    for m in range(degrees):
        if m > 0:
            diagonal = diagonal * math.sqrt((2.0 * m + 1.0) / (2.0 * m)) * s
        values[(m, m)] = diagonal
        if m + 1 < degrees:
            values[(m + 1, m)] = math.sqrt(2.0 * m + 3.0) * x * diagonal
        for degree in range(m + 2, degrees):
            a = math.sqrt((4.0 * degree * degree - 1.0) / (degree * degree - m * m))
            b = math.sqrt(((degree - 1.0) ** 2 - m * m) / (4.0 * (degree - 1.0) ** 2 - 1.0))
            values[(degree, m)] = a * (x * values[(degree - 1, m)] - b * values[(degree - 2, m)])
    return values


# ------------------------------------------------------------------------------------------------
# SIREN (parameter names follow `model.location.nnet.*` after the prefix)
# ------------------------------------------------------------------------------------------------


class Siren(nn.Module):
    """Linear layers with sine activations: sin(30·x) after the first, sin(x) after the others, then linear."""

    def __init__(self, in_features: int, hidden: int, out_features: int, num_hidden_layers: int) -> None:
        super().__init__()
        widths = [in_features] + [hidden] * num_hidden_layers
        self.layers = nn.ModuleList(
            nn.Linear(a, b, dtype=torch.float64) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.last_layer = nn.Linear(hidden, out_features, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            # Dropout in the reference acts only in training; inference has none.
            x = torch.sin((FIRST_LAYER_W0 if index == 0 else HIDDEN_W0) * layer(x))
        return self.last_layer(x)


class SatCLIPLocationModel(EmbeddingModel):
    family = "satclip"
    levels = ("location",)
    default_level = "location"

    def __init__(self, config: SatCLIPConfig) -> None:
        super().__init__(config, LOCATION_SENSOR, ())
        if config.harmonics not in HARMONICS:
            raise ClayInputError(f"unknown harmonics {config.harmonics!r}; use one of {', '.join(HARMONICS)}")
        self.nnet = Siren(config.legendre_polys**2, config.hidden, config.embed_dim, config.num_hidden_layers)

    def features(self, lonlat_deg: torch.Tensor) -> torch.Tensor:
        return spherical_harmonics(lonlat_deg, self.config.legendre_polys, self.config.harmonics)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """batch["coords"]: [N, 2] (lon, lat) degrees -> [N, embed_dim] float64 (not normalised)."""
        coords = batch["coords"].to(self.nnet.last_layer.weight.device)
        return self.nnet(self.features(coords))

    def pool(self, tokens: torch.Tensor, level: str) -> torch.Tensor:
        self.check_level(level)
        return tokens

    def embedding_shape(self, level: str) -> tuple[int, ...]:
        self.check_level(level)
        return (self.config.embed_dim,)

    def filled_bands(self, bands: Sequence[str]) -> tuple[str, ...]:
        return ()

    def prepare_locations(
        self, lonlat: np.ndarray | torch.Tensor | Sequence[Sequence[float]]
    ) -> dict[str, torch.Tensor]:
        coords = torch.as_tensor(np.asarray(torch.as_tensor(lonlat).cpu(), dtype=np.float64)).reshape(-1, 2)
        check_lonlat(coords.numpy())
        return {"coords": coords}

    def prepare(
        self,
        pixels: np.ndarray | torch.Tensor | None,
        bands: Sequence[str],
        lonlat: np.ndarray | torch.Tensor | Sequence[Sequence[float]],
        dates: Sequence[datetime.date] | None,
        gsd_m: float = 10.0,
    ) -> dict[str, torch.Tensor]:
        """The pipeline's call shape; only `lonlat` (chip centres) matters to a location encoder."""
        return self.prepare_locations(lonlat)

    def embed_float64(self, lonlat: np.ndarray) -> np.ndarray:
        """Full-precision embeddings [N, embed_dim] (float64 numpy), no autocast."""
        batch = self.prepare_locations(lonlat)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return self.encode(batch).cpu().numpy()
        finally:
            self.train(was_training)

    def metadata(self, level: str | None = None, bands: Sequence[str] | None = None) -> dict[str, Any]:
        meta = super().metadata(level, bands)  # a location model: no bands at all
        meta.update(
            {
                "coordinates": "lon,lat degrees (WGS84)",
                "legendre_polys": self.config.legendre_polys,
                "harmonics": self.config.harmonics,
                "compute_dtype": "float64",
                "normalised": False,
            }
        )
        for key in ("wavelengths_um", "normalization"):
            meta.pop(key, None)
        return meta


def check_lonlat(lonlat: np.ndarray) -> None:
    """User input must be degrees in range: out-of-range values usually mean projected metres or swapped axes."""
    if lonlat.size == 0:
        return
    if not np.isfinite(lonlat).all():
        raise ClayInputError("locations contain NaN or infinite coordinates; drop those points first")
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    if np.abs(lat).max() > 90.0 or np.abs(lon).max() > 180.0:
        raise ClayInputError(
            "coordinates must be (lon, lat) in degrees with |lon| <= 180 and |lat| <= 90; "
            f"got lon {lon.min():.4g}..{lon.max():.4g}, lat {lat.min():.4g}..{lat.max():.4g} "
            "(projected coordinates or swapped columns?)"
        )


# ------------------------------------------------------------------------------------------------
# Family: the official Lightning .ckpt layout (model.location.nnet.* / model.nnet.*)
# ------------------------------------------------------------------------------------------------

_LAST_LAYER = "nnet.last_layer.weight"


def location_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep tensors whose name contains `nnet.`, cut everything before it. The checkpoint stores the
    SIREN twice (model.nnet and model.location.nnet alias one module); the location copy wins."""
    selected: dict[str, torch.Tensor] = {}
    for key in sorted(state_dict, key=lambda k: "location." in k):  # location.* last, so it wins
        position = key.find("nnet.")
        if position < 0 or (position > 0 and key[position - 1] != "."):
            continue
        selected[key[position:]] = state_dict[key]
    if _LAST_LAYER not in selected:
        raise CheckpointError("checkpoint has no SatCLIP location encoder (no '*nnet.last_layer.weight')")
    return selected


@register_family
class SatCLIPFamily(ModelFamily):
    name = "satclip"

    def recognise(self, keys: Collection[str], hyper_parameters: Mapping[str, Any]) -> bool:
        return any(key == _LAST_LAYER or key.endswith("." + _LAST_LAYER) for key in keys)

    def config_from_checkpoint(
        self,
        state_dict: Mapping[str, torch.Tensor],
        hyper_parameters: Mapping[str, Any],
        overrides: Mapping[str, Any],
    ) -> SatCLIPConfig:
        hyper = dict(hyper_parameters or {})
        for key, supported in (("le_type", "sphericalharmonics"), ("pe_type", "siren")):
            if key in hyper and hyper[key] != supported:
                raise CheckpointError(
                    f"SatCLIP checkpoint uses {key}={hyper[key]!r}; only {supported!r} is "
                    "supported (the released models)"
                )
        weights = location_weights(state_dict)
        in_features = int(weights["nnet.layers.0.weight"].shape[1])
        degrees = math.isqrt(in_features)
        if degrees * degrees != in_features:
            raise CheckpointError(f"first SatCLIP layer takes {in_features} inputs, not L² harmonics")
        if "legendre_polys" in hyper and int(hyper["legendre_polys"]) != degrees:
            raise CheckpointError(
                f"hparams say legendre_polys={hyper['legendre_polys']} but the weights take "
                f"{in_features} = {degrees}² features"
            )
        layer_indices = {int(key.split(".")[2]) for key in weights if key.startswith("nnet.layers.")}
        harmonics = str(hyper.get("harmonics_calculation", "analytic"))
        config = SatCLIPConfig(
            legendre_polys=degrees,
            hidden=int(weights["nnet.layers.0.weight"].shape[0]),
            num_hidden_layers=len(layer_indices),
            embed_dim=int(weights["nnet.last_layer.weight"].shape[0]),
            harmonics=harmonics if harmonics in HARMONICS else "analytic",
        )
        return apply_overrides(config, overrides)

    def build(self, config: SatCLIPConfig) -> SatCLIPLocationModel:
        return SatCLIPLocationModel(config)

    def select_weights(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Never round through float32: the released weights are genuine float64.
        return {key: value.double() for key, value in location_weights(state_dict).items()}


register_preset("satclip-l10", family="satclip", config=SatCLIPConfig(legendre_polys=10))
register_preset("satclip-l40", family="satclip", config=SatCLIPConfig(legendre_polys=40))


# ------------------------------------------------------------------------------------------------
# The function the chip pipeline uses for its opt-in SatCLIP column
# ------------------------------------------------------------------------------------------------


def load_satclip_model(checkpoint_or_preset: str | Path, device: str = "cpu") -> SatCLIPLocationModel:
    """A SatCLIP location encoder, or a ClayInputError when the checkpoint is another model: the one
    "is this SatCLIP?" check. Loaded once per process, device and file version (a checkpoint replaced on
    disk is loaded again)."""
    path = Path(checkpoint_or_preset).expanduser()
    version = (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None
    return _load_satclip_model(str(checkpoint_or_preset), device, version)


@functools.lru_cache(maxsize=2)
def _load_satclip_model(
    checkpoint_or_preset: str, device: str, _file_version: tuple[int, int] | None
) -> SatCLIPLocationModel:
    from clay_core.models.registry import load_model

    model = load_model(checkpoint_or_preset, device=device, precision="fp32")
    if not isinstance(model, SatCLIPLocationModel):
        raise ClayInputError(
            f"{checkpoint_or_preset} is a {model.family} model, not a SatCLIP location encoder: "
            "give a satclip-*.ckpt (or the preset satclip-l10/satclip-l40)"
        )
    return model


def satclip_embed_lonlat(
    lonlat: np.ndarray,
    checkpoint: str | Path | SatCLIPLocationModel,
    *,
    device: str = "cpu",
    batch_size: int = 8192,
) -> np.ndarray:
    """SatCLIP embeddings [N, embed_dim] (float64, not normalised) of `lonlat` [N, 2] (lon, lat degrees).

    `checkpoint` is a SatCLIP .ckpt path, a preset name, or a loaded model; loaded models are cached per
    (checkpoint, device), so calling this once per batch of chips is cheap."""
    model = checkpoint if isinstance(checkpoint, SatCLIPLocationModel) else load_satclip_model(checkpoint, device)
    points = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        return np.zeros((0, model.config.embed_dim), dtype=np.float64)
    return np.concatenate(
        [model.embed_float64(points[start : start + batch_size]) for start in range(0, len(points), batch_size)]
    )
