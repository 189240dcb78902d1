"""Clay v1 / v1.5 encoder: any sensor by wavelength, 8 px patches, CLS token (spec/clay.md section 6).

Only the encoder is built and loaded (`model.encoder.*` of `clay-v1.5.ckpt` / `clay-v1-base.ckpt`);
the MAE decoder, the projection and the timm teacher are never built, so nothing is downloaded.

The patch embedding is generated per call from the bands' central wavelengths (DOFA-style), so a
chip may carry any subset of bands whose wavelength is known: a 4-band RGB+NIR raster embeds as is,
without filling missing Sentinel-2 bands.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clay_core.device import MemoryEstimate, estimate_encoder_memory
from clay_core.errors import CheckpointError, ClayInputError
from clay_core.models.registry import (
    EmbeddingModel,
    ModelFamily,
    apply_overrides,
    register_family,
    register_preset,
)
from clay_core.sensors import SENSORS, Sensor, get_sensor

ENCODER_PREFIXES = ("model.encoder.", "encoder.", "")
# A tensor only the v1/v1.5 encoder has: the learned tokens of its wavelength-conditioned weight generator.
SIGNATURE_KEY = "patch_embedding.weight_generator.weight_tokens"
ENCODER_TOP_LEVEL = ("cls_token", "patch_embedding.", "transformer.")


@dataclass(frozen=True)
class ClayV15Config:
    image_size: int = 256  # chip side in pixels (any multiple of patch_size works; this sets the patch grid)
    patch_size: int = 8
    dim: int = 1024
    depth: int = 24
    heads: int = 16
    dim_head: int = 64
    mlp_ratio: float = 4.0
    wave_dim: int = 128
    num_latent_tokens: int = 128
    wave_heads: int = 4
    wave_feedforward: int = 2048
    platform: str = "sentinel-2-l2a"  # band metadata (wavelengths, normalisation) used by prepare()


# spec/clay.md 6.1: the `clay_mae_*` factory sizes.
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"dim": 192, "depth": 6, "heads": 4, "dim_head": 48, "mlp_ratio": 2.0},
    "small": {"dim": 384, "depth": 6, "heads": 6, "dim_head": 64, "mlp_ratio": 2.0},
    "base": {"dim": 768, "depth": 12, "heads": 12, "dim_head": 64, "mlp_ratio": 4.0},
    "large": {"dim": 1024, "depth": 24, "heads": 16, "dim_head": 64, "mlp_ratio": 4.0},
}


def encoder_flops(config: ClayV15Config, bands: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one chip of `bands` bands through the encoder: the patch
    convolution, the linears and the attention matmuls (QK^T and AV, which torch's FLOP counter misses on
    CPU, where SDPA runs as a fused kernel without a FLOP formula).

    LayerNorm, GELU, softmax and additions are left out, as torch.utils.flop_counter does. The wavelength
    weight generator runs once per batch, not per chip (about 0.3 GFLOP for the large model), and is not
    counted either."""
    patches = (config.image_size // config.patch_size) ** 2
    tokens = patches + 1  # the CLS token
    inner = config.heads * config.dim_head
    hidden = int(round(config.dim * config.mlp_ratio))
    conv = 2 * bands * config.patch_size**2 * config.dim * patches
    projections = 2 * tokens * config.dim * 3 * inner + 2 * tokens * inner * config.dim
    attention = 2 * 2 * tokens * tokens * inner
    mlp = 2 * 2 * tokens * config.dim * hidden
    return conv + config.depth * (projections + attention + mlp)


# ------------------------------------------------------------------------------------------------
# Fixed encodings
# ------------------------------------------------------------------------------------------------


def wavelength_sincos(waves_um: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] wavelengths (µm) -> [N, dim]: [sin(λω) | cos(λω)], ω_k = 10000^(-k/(dim/2 - 1))."""
    half = dim // 2
    omega = torch.arange(half, device=waves_um.device, dtype=torch.float32) / (half - 1)
    omega = 1.0 / (10000**omega)
    angles = waves_um.float()[:, None] * omega[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1)


def gsd_position_encoding(rows: int, cols: int, dim: int, gsd: torch.Tensor) -> torch.Tensor:
    """[rows*cols, dim] 2-D sincos table scaled by the ground sample distance.

    Reproduces the reference exponent literally: ω_k = gsd / 10000^(2·(k/(q−1))/dim) with q = dim/4,
    so every frequency is ≈ gsd (spec/clay.md 6.3, pitfall 8). Columns: sin x, cos x, sin y, cos y.
    """
    quarter = dim // 4
    device = gsd.device
    y, x = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    omega = torch.arange(quarter, device=device) / (quarter - 1)
    omega = 1.0 / (10000 ** (2 * omega / dim)) * (gsd / 1.0)
    y_angles = y.flatten()[:, None] * omega[None, :]
    x_angles = x.flatten()[:, None] * omega[None, :]
    table = torch.cat((x_angles.sin(), x_angles.cos(), y_angles.sin(), y_angles.cos()), dim=1)
    return table.float()


# ------------------------------------------------------------------------------------------------
# Modules (attribute names follow the checkpoint keys after stripping `model.encoder.`)
# ------------------------------------------------------------------------------------------------


class WaveFeatureBlock(nn.Module):
    """`fclayer`: x + gelu(l2(gelu(l1(x))))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(dim, dim)
        self.l2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.l2(F.gelu(self.l1(x))))


class WaveWeightGenerator(nn.Module):
    """Turns per-band wavelength features into a conv kernel [N, P·P·D] and a bias [D]."""

    def __init__(self, config: ClayV15Config) -> None:
        super().__init__()
        width = config.wave_dim
        self.weight_tokens = nn.Parameter(torch.randn(config.num_latent_tokens, width) * 0.02)
        self.bias_token = nn.Parameter(torch.randn(1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=width,
            nhead=config.wave_heads,
            dim_feedforward=config.wave_feedforward,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=False,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fc_weight = nn.Linear(width, config.patch_size**2 * config.dim)
        self.fc_bias = nn.Linear(width, config.dim)
        self.num_latent_tokens = config.num_latent_tokens

    def forward(self, wave_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bands = wave_features.shape[0]
        start = self.num_latent_tokens
        sequence = torch.cat((self.weight_tokens, wave_features, self.bias_token), dim=0)
        encoded = self.encoder(sequence)  # unbatched [latent + N + 1, width]
        # The weights read the band tokens plus a residual from the pre-transformer wave features.
        weights = self.fc_weight(encoded[start : start + bands] + wave_features)
        bias = self.fc_bias(encoded[-1])
        return weights, bias


class WavelengthPatchEmbedding(nn.Module):
    """`patch_embedding`: a stride-P conv whose kernel is generated from the bands' wavelengths."""

    KERNEL_SCALE = 0.02  # applied to the generated weights only, not to the bias

    def __init__(self, config: ClayV15Config) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.dim = config.dim
        self.wave_dim = config.wave_dim
        self.weight_generator = WaveWeightGenerator(config)
        self.fclayer = WaveFeatureBlock(config.wave_dim)

    def wave_features(self, waves_um: torch.Tensor) -> torch.Tensor:
        return self.fclayer(wavelength_sincos(waves_um, self.wave_dim))

    def forward(self, pixels: torch.Tensor, waves_um: torch.Tensor) -> torch.Tensor:
        weights, bias = self.weight_generator(self.wave_features(waves_um))
        bands, p = waves_um.shape[0], self.patch_size
        # Generated columns are laid out (D, k1, k2) per band: [N, D·P·P] -> kernel [D, N, P, P].
        kernel = weights.reshape(bands, self.dim, p, p).permute(1, 0, 2, 3)
        patches = F.conv2d(pixels, kernel * self.KERNEL_SCALE, bias, stride=p)
        return patches.flatten(2).transpose(1, 2)  # [B, L, D], row-major patch order


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(batch, tokens, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, tokens, dim_head]
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(attended.transpose(1, 2).reshape(batch, tokens, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        # Indices 0..3 match the checkpoint: net.0 LayerNorm, net.1 Linear, net.2 GELU, net.3 Linear.
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm ViT blocks and a final LayerNorm."""

    def __init__(self, config: ClayV15Config) -> None:
        super().__init__()
        hidden = int(round(config.dim * config.mlp_ratio))
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(config.dim, config.heads, config.dim_head), FeedForward(config.dim, hidden)])
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            attention, feedforward = cast(nn.ModuleList, layer)
            x = attention(x) + x
            x = feedforward(x) + x
        return self.norm(x)


# ------------------------------------------------------------------------------------------------
# Encodings of time and place (tutorial conventions)
# ------------------------------------------------------------------------------------------------


def time_encoding(dates: Sequence[datetime.date | None]) -> torch.Tensor:
    """[B, 4] = [sin w, cos w, sin h, cos h], w = ISO week·2π/52, h = hour·2π/24 (0 h for plain dates).

    An unknown date gives zeros: Clay v1.5 trained with zeroed time for 20% of chips."""
    rows = []
    for date in dates:
        if date is None:
            rows.append([0.0, 0.0, 0.0, 0.0])
            continue
        week = date.isocalendar()[1] * 2 * math.pi / 52
        hour = (date.hour if isinstance(date, datetime.datetime) else 0) * 2 * math.pi / 24
        rows.append([math.sin(week), math.cos(week), math.sin(hour), math.cos(hour)])
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 4)


def latlon_encoding(lonlat_deg: np.ndarray) -> torch.Tensor:
    """[B, 2] (lon, lat) degrees -> [B, 4] = [sin lat, cos lat, sin lon, cos lon]; NaN rows -> zeros."""
    lonlat = np.asarray(lonlat_deg, dtype=np.float64).reshape(-1, 2)
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    encoded = np.stack((np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)), axis=1)
    encoded[~np.isfinite(lonlat).all(axis=1)] = 0.0
    return torch.from_numpy(encoded.astype(np.float32))


def to_decibels(linear: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(torch.clamp(linear, min=1e-10))


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------


class ClayV15Model(EmbeddingModel):
    family = "clay-v1.5"
    levels = ("cls", "patch")
    default_level = "cls"

    def __init__(self, config: ClayV15Config) -> None:
        sensor = _platform_sensor(config.platform)
        super().__init__(config, sensor, sensor.band_names)
        if config.dim % 4 or (config.dim - 8) % 4:
            raise ClayInputError(f"model dim {config.dim} must be a multiple of 4")
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02)
        self.patch_embedding = WavelengthPatchEmbedding(config)
        self.transformer = Transformer(config)

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    # -- encoder -------------------------------------------------------------------------------
    def encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Reference layout [B, 1 + L, D]: CLS, then patch tokens in row-major order."""
        pixels, waves = batch["pixels"], batch["waves"]
        patch = self.config.patch_size
        rows, cols = pixels.shape[-2] // patch, pixels.shape[-1] // patch
        tokens = self.patch_embedding(pixels, waves)
        gsd = torch.as_tensor(batch["gsd"], device=pixels.device)
        position = gsd_position_encoding(rows, cols, self.config.dim - 8, gsd)
        batch_size = tokens.shape[0]
        # [pos (D-8) | time (4) | latlon (4)] is added to every patch token; the CLS token gets nothing.
        encoding = torch.cat(
            (
                position.unsqueeze(0).expand(batch_size, -1, -1),
                batch["time"].float()[:, None, :].expand(-1, rows * cols, -1),
                batch["latlon"].float()[:, None, :].expand(-1, rows * cols, -1),
            ),
            dim=-1,
        )
        tokens = tokens + encoding.to(tokens.dtype)
        cls = self.cls_token.expand(batch_size, -1, -1).to(tokens.dtype)
        return self.transformer(torch.cat((cls, tokens), dim=1))

    def pool(self, tokens: torch.Tensor, level: str) -> torch.Tensor:
        level = self.check_level(level)
        if level == "cls":
            return tokens[:, 0, :]
        patches = tokens[:, 1:, :]
        side = math.isqrt(patches.shape[1])
        if side * side != patches.shape[1]:
            raise ClayInputError("patch level needs square chips; use --level cls for non-square chips")
        return patches.reshape(tokens.shape[0], side, side, -1)

    def embedding_shape(self, level: str) -> tuple[int, ...]:
        level = self.check_level(level)
        if level == "cls":
            return (self.config.dim,)
        side = self.config.image_size // self.config.patch_size
        return (side, side, self.config.dim)

    def memory_estimate(self, batch_size: int) -> MemoryEstimate:
        """Peak memory of one `embed` batch of chips with every band of the platform (an upper bound)."""
        config = self.config
        tokens = (config.image_size // config.patch_size) ** 2 + 1
        bands = len(self.input_bands)
        return estimate_encoder_memory(
            parameters=sum(p.numel() for p in self.parameters()),
            tokens=tokens,
            dim=config.dim,
            inner_dim=config.heads * config.dim_head,
            mlp_hidden=int(round(config.dim * config.mlp_ratio)),
            heads=config.heads,
            batch_size=batch_size,
            input_values=bands * config.image_size**2 + 8,
            precision=self.plan.precision,
            # the convolution's output, the position/time/place encoding and the tokens it is added to
            staging_bytes=batch_size * 4 * 3 * tokens * config.dim,
        )

    # -- inputs --------------------------------------------------------------------------------
    def resolve_bands(self, bands: Sequence[str]) -> tuple[str, ...]:
        """Canonical platform names for `bands` (aliases like "red" accepted); unknown bands are refused."""
        if not bands:
            raise ClayInputError("no bands given; Clay v1.5 needs at least one band with a known wavelength")
        resolved = []
        for name in bands:
            try:
                resolved.append(self.sensor.band(name).name)
            except KeyError:
                others = [
                    s.name
                    for s in SENSORS.values()
                    if s.name != self.sensor.name and s.has_band(name) and s.name != "clay-v0"
                ]
                hint = f" (known on: {', '.join(others)}; pick that platform)" if others else ""
                raise ClayInputError(
                    f"band {name!r} has no known wavelength on platform {self.sensor.name} "
                    f"(bands: {', '.join(self.sensor.band_names)}){hint}"
                ) from None
        if len(set(resolved)) != len(resolved):
            raise ClayInputError(f"bands {list(bands)} name the same band twice")
        return tuple(resolved)

    def filled_bands(self, bands: Sequence[str]) -> tuple[str, ...]:
        """v1.5 embeds exactly the bands it is given: nothing is ever filled."""
        return ()

    def prepare(
        self,
        pixels: np.ndarray | torch.Tensor,
        bands: Sequence[str],
        lonlat: np.ndarray | torch.Tensor | Sequence[Sequence[float]] | None,
        dates: Sequence[datetime.date | None] | None,
        gsd_m: float = 10.0,
    ) -> dict[str, torch.Tensor]:
        names = self.resolve_bands(bands)
        cube = torch.as_tensor(
            np.asarray(pixels, dtype=np.float32) if not isinstance(pixels, torch.Tensor) else pixels
        ).float()
        if cube.ndim != 4 or cube.shape[1] != len(names):
            raise ClayInputError(f"pixels must be [batch, {len(names)} bands, height, width]; got {tuple(cube.shape)}")
        patch = self.config.patch_size
        if cube.shape[-2] % patch or cube.shape[-1] % patch:
            raise ClayInputError(f"chip size {tuple(cube.shape[-2:])} is not a multiple of the patch size {patch}")
        if not gsd_m or gsd_m <= 0 or not math.isfinite(gsd_m):
            raise ClayInputError(f"ground sample distance must be a positive number of metres, got {gsd_m}")
        if self.sensor.linear_to_db:
            cube = to_decibels(cube)
        means = torch.from_numpy(self.sensor.means(names))[None, :, None, None]
        stds = torch.from_numpy(self.sensor.stds(names))[None, :, None, None]
        # NaN (nodata) becomes the band mean, i.e. 0 after normalising.
        normalised = torch.nan_to_num((cube - means) / stds, nan=0.0, posinf=0.0, neginf=0.0)
        batch_size = cube.shape[0]
        lonlat_array = (
            np.full((batch_size, 2), np.nan)
            if lonlat is None
            else np.asarray(torch.as_tensor(lonlat).cpu(), dtype=np.float64).reshape(-1, 2)
        )
        date_list = list(dates) if dates is not None else [None] * batch_size
        if len(lonlat_array) != batch_size or len(date_list) != batch_size:
            raise ClayInputError(
                f"got {batch_size} chips but {len(lonlat_array)} lon/lat pairs and {len(date_list)} dates"
            )
        return {
            "pixels": normalised,
            "time": time_encoding(date_list),
            "latlon": latlon_encoding(lonlat_array),
            "gsd": torch.tensor(float(gsd_m), dtype=torch.float32),  # 0-d, as the reference passes it
            "waves": torch.from_numpy(self.sensor.wavelengths_um(names)),
        }

    def metadata(self, level: str | None = None, bands: Sequence[str] | None = None) -> dict[str, Any]:
        """As the base, plus the platform; `bands` = the bands actually embedded (default: all)."""
        meta = super().metadata(level, bands)
        if bands is not None:
            names = self.resolve_bands(bands)
            chosen = [self.sensor.band(name) for name in names]
            meta["bands"] = list(names)
            meta["wavelengths_um"] = [band.wavelength_um for band in chosen]
            meta["normalization"] = {"mean": [b.mean for b in chosen], "std": [b.std for b in chosen]}
        meta["platform"] = self.sensor.name
        meta["chip_size"] = self.config.image_size
        meta["patch_size"] = self.config.patch_size
        meta["input_transform"] = (
            "10*log10(max(x,1e-10)) then (x-mean)/std" if self.sensor.linear_to_db else "(x-mean)/std; NaN -> 0"
        )
        return meta


def _platform_sensor(name: str) -> Sensor:
    try:
        sensor = get_sensor(name)
    except KeyError:
        known = ", ".join(sorted(n for n in SENSORS if n != "clay-v0"))
        raise ClayInputError(f"unknown platform {name!r} for Clay v1.5; use one of {known}") from None
    if any(band.wavelength_um is None for band in sensor.bands):
        raise ClayInputError(f"platform {name!r} has bands without wavelengths; Clay v1.5 cannot use it")
    return sensor


# ------------------------------------------------------------------------------------------------
# Family: recognise, configure and load checkpoints
# ------------------------------------------------------------------------------------------------


def encoder_prefix(keys: Collection[str]) -> str | None:
    """The prefix under which the encoder's tensors live, or None when this is no v1/v1.5 encoder."""
    for prefix in ENCODER_PREFIXES:
        if prefix + SIGNATURE_KEY in keys:
            return prefix
    return None


def encoder_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefix = encoder_prefix(state_dict.keys())
    if prefix is None:
        raise CheckpointError(
            "checkpoint has no Clay v1/v1.5 encoder (no "
            f"'model.encoder.{SIGNATURE_KEY}'); is it a Clay v1.5 checkpoint?"
        )
    # Only the encoder: the teacher, projection and decoder (whose depth differs between releases) are skipped.
    return {
        key[len(prefix) :]: value
        for key, value in state_dict.items()
        if key.startswith(prefix) and key[len(prefix) :].startswith(ENCODER_TOP_LEVEL)
    }


def _count_layers(weights: Mapping[str, torch.Tensor]) -> int:
    indices = {int(key.split(".")[2]) for key in weights if key.startswith("transformer.layers.")}
    return max(indices) + 1 if indices else 0


def _heads_and_dim_head(weights: Mapping[str, torch.Tensor], hyper: Mapping[str, Any], dim: int) -> tuple[int, int]:
    """Heads cannot be read from shapes alone (only heads·dim_head): use hparams, else the v1 sizes."""
    inner = weights["transformer.layers.0.0.to_qkv.weight"].shape[0] // 3
    explicit = hyper.get("fixture_model_args") or {}
    if "heads" in explicit and "dim_head" in explicit:
        return int(explicit["heads"]), int(explicit["dim_head"])
    size = MODEL_SIZES.get(str(hyper.get("model_size", "")))
    if size and size["dim"] == dim and size["heads"] * size["dim_head"] == inner:
        return size["heads"], size["dim_head"]
    for candidate in MODEL_SIZES.values():
        if candidate["dim"] == dim and candidate["heads"] * candidate["dim_head"] == inner:
            return candidate["heads"], candidate["dim_head"]
    if inner % 64:
        raise CheckpointError(
            f"cannot tell the attention heads of this Clay v1.5 checkpoint (dim {dim}, "
            f"inner {inner}); pass heads=... and dim_head=..."
        )
    return inner // 64, 64


@register_family
class ClayV15Family(ModelFamily):
    name = "clay-v1.5"

    def recognise(self, keys: Collection[str], hyper_parameters: Mapping[str, Any]) -> bool:
        return encoder_prefix(keys) is not None

    def config_from_checkpoint(
        self,
        state_dict: Mapping[str, torch.Tensor],
        hyper_parameters: Mapping[str, Any],
        overrides: Mapping[str, Any],
    ) -> ClayV15Config:
        weights = encoder_weights(state_dict)
        hyper = dict(hyper_parameters or {})
        dim = int(weights["cls_token"].shape[-1])
        generator = "patch_embedding.weight_generator."
        wave_dim = int(weights[generator + "weight_tokens"].shape[1])
        kernel_width = int(weights[generator + "fc_weight.weight"].shape[0])
        patch_size = math.isqrt(kernel_width // dim)
        if patch_size * patch_size * dim != kernel_width:
            raise CheckpointError(f"fc_weight has {kernel_width} outputs, not patch²·{dim}; not a Clay v1.5 encoder")
        heads, dim_head = _heads_and_dim_head(weights, hyper, dim)
        hidden = int(weights["transformer.layers.0.1.net.1.weight"].shape[0])
        explicit_overrides = {k: v for k, v in overrides.items() if k in {"heads", "dim_head"}}
        config = ClayV15Config(
            image_size=int(overrides.get("image_size", 256)),
            patch_size=patch_size,
            dim=dim,
            depth=_count_layers(weights),
            heads=heads,
            dim_head=dim_head,
            mlp_ratio=hidden / dim,
            wave_dim=wave_dim,
            num_latent_tokens=int(weights[generator + "weight_tokens"].shape[0]),
            wave_heads=4,
            wave_feedforward=int(weights[generator + "encoder.layers.0.linear1.weight"].shape[0]),
        )
        # Training-only options of the official module (mask_ratio, shuffle, ...) do not apply to inference.
        ignored = {"mask_ratio", "shuffle"}
        remaining = {k: v for k, v in overrides.items() if k not in ignored and k not in explicit_overrides}
        return apply_overrides(apply_overrides(config, explicit_overrides), remaining)

    def build(self, config: ClayV15Config) -> ClayV15Model:
        return ClayV15Model(config)

    def select_weights(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.float() for key, value in encoder_weights(state_dict).items()}


for _size, _args in MODEL_SIZES.items():
    register_preset(
        f"clay-v1.5-{_size}",
        family="clay-v1.5",
        config=ClayV15Config(**_args),
    )
