"""Clay v0: the 13-band (S2 + S1 + DEM) band-group ViT encoder, exactly as the reference code computes it.

Facts from spec/clay.md sections 1-3. Token layout of `encode`: [B, G*L + 2, D] with patch token
t = g*L + row*grid + col (group-major), then the lat/lon token, then the time token. Module names
mirror the reference so the official `model.encoder.*` keys load unchanged; the sincos tables are
non-persistent buffers recomputed from the config (they never appear in a state_dict).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clay_core.checkpoints import strip_prefix
from clay_core.device import MemoryEstimate, estimate_encoder_memory
from clay_core.errors import CheckpointError, ClayInputError
from clay_core.models.clay_v0_bands import DEFAULT_BAND_GROUPS
from clay_core.models.registry import EmbeddingModel, ModelFamily, register_family, register_preset
from clay_core.sensors import CLAY_V0

FAMILY = "clay-v0"

SINCOS_TEMPERATURE = 10000.0
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class ClayV0Config:
    image_size: int = 512
    patch_size: int = 32
    dim: int = 768
    depth: int = 12
    heads: int = 12
    dim_head: int = 64
    mlp_ratio: float = 4.0
    band_groups: tuple[tuple[str, tuple[int, ...]], ...] = DEFAULT_BAND_GROUPS
    # "float16" rounds the sincos tables like code v0.0.1 did (the released v0/v0.1 weights were trained
    # that way); "float32" matches the later reference code and the parity fixture.
    table_dtype: str = "float32"
    # MAE decoder and masking, used by training (clay_core/models/clay_v0_mae.py), not by embedding.
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 8
    decoder_dim_head: int = 64
    decoder_mlp_ratio: float = 4.0
    mask_ratio: float = 0.75

    def __post_init__(self) -> None:
        # Normalise band groups given as a dict or lists (hyper-parameters, JSON) to hashable tuples.
        groups = self.band_groups.items() if isinstance(self.band_groups, Mapping) else self.band_groups
        object.__setattr__(self, "band_groups", tuple((str(n), tuple(int(i) for i in idx)) for n, idx in groups))
        problems = self.problems()
        if problems:
            raise ClayInputError(f"invalid Clay v0 config: {'; '.join(problems)}")

    def problems(self) -> list[str]:
        found = []
        if self.patch_size <= 0 or self.image_size % self.patch_size:
            found.append(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.dim % 8 or self.dim < 16:
            found.append(f"dim {self.dim} must be a multiple of 8 and >= 16 (sincos tables use dim/8 frequencies)")
        if not self.band_groups:
            found.append("band_groups is empty")
        if self.table_dtype not in ("float32", "float16"):
            found.append(f"table_dtype {self.table_dtype!r} must be 'float32' or 'float16'")
        if self.heads <= 0 or self.dim_head <= 0 or self.depth < 0:
            found.append("heads and dim_head must be positive and depth >= 0")
        return found

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def num_groups(self) -> int:
        return len(self.band_groups)

    @property
    def num_tokens(self) -> int:
        """Tokens entering the transformer at inference: G*L patch tokens + lat/lon + time."""
        return self.num_groups * self.num_patches + 2

    @property
    def mlp_hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)


# ----------------------------------------------------------------------------------------------
# Fixed sincos encodings (spec 2.3)
# ----------------------------------------------------------------------------------------------


def sincos_2d(grid: int, width: int) -> torch.Tensor:
    """[grid*grid, width]: columns sin(x w), cos(x w), sin(y w), cos(y w); row-major (row = y)."""
    quarter = width // 4
    omega = torch.arange(quarter, dtype=torch.float32) / max(quarter - 1, 1)
    omega = 1.0 / (SINCOS_TEMPERATURE**omega)
    y, x = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    x_angles = x.flatten()[:, None] * omega[None, :]
    y_angles = y.flatten()[:, None] * omega[None, :]
    return torch.cat((x_angles.sin(), x_angles.cos(), y_angles.sin(), y_angles.cos()), dim=1)


def sincos_1d(length: int, width: int) -> torch.Tensor:
    """[length, width]: columns sin(p w) then cos(p w) for positions p = 0..length-1."""
    half = width // 2
    omega = torch.arange(half, dtype=torch.float32) / max(half - 1, 1)
    omega = 1.0 / (SINCOS_TEMPERATURE**omega)
    angles = torch.arange(length)[:, None] * omega[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1)


def token_encoding(config: ClayV0Config) -> torch.Tensor:
    """[G, L, D]: concat(2-D position of the patch, 1-D index of its band group)."""
    half = config.dim // 2
    position = sincos_2d(config.grid, half)  # [L, D/2]
    group = sincos_1d(config.num_groups, half)  # [G, D/2]
    encoding = torch.cat(
        (
            position[None].expand(config.num_groups, -1, -1),
            group[:, None].expand(-1, config.num_patches, -1),
        ),
        dim=-1,
    )
    if config.table_dtype == "float16":
        encoding = encoding.half().float()
    return encoding.contiguous()


# ----------------------------------------------------------------------------------------------
# Transformer (vit-pytorch 1.6.4 layout: pre-norm blocks, final LayerNorm)
# ----------------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        # The reference drops the output projection only when it would be an identity map.
        project_out = not (heads == 1 and dim_head == dim)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0)) if project_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.to_qkv(self.norm(x)).view(batch, tokens, 3, self.heads, self.dim_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, dim_head]
        out = F.scaled_dot_product_attention(q, k, v)  # default scale dim_head**-0.5, as the reference
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, self.heads * self.dim_head))


class InferenceGELU(nn.GELU):
    """Exact (erf) GELU that works in place when no gradient is needed: the MLP hidden is the largest
    activation, and on CPU a fresh allocation of it costs as much as the GELU itself (page faults)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return F.gelu(x)
        return torch.ops.aten.gelu_(x)


def _add_residual(update: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """update + residual, in place on the fresh `update` when autograd is off (saves an allocation).
    Under autocast `update` may be bf16 while the residual stream is fp32: then promote, never truncate."""
    if torch.is_grad_enabled() or update.dtype != residual.dtype:
        return update + residual
    return update.add_(residual)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim, eps=LAYER_NORM_EPS),
            nn.Linear(dim, hidden),
            InferenceGELU(),  # exact erf GELU
            nn.Dropout(0.0),
            nn.Linear(hidden, dim),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head), FeedForward(dim, mlp_hidden)]) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            attention, feed_forward = cast(nn.ModuleList, layer)
            x = _add_residual(attention(x), x)
            x = _add_residual(feed_forward(x), x)
        return self.norm(x)


# ----------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------


class Patchify(nn.Module):
    """One band group: conv with kernel = stride = patch size, flatten row-major, LayerNorm."""

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(pixels).flatten(2).transpose(1, 2))  # [B, L, D]


class ClayV0Encoder(nn.Module):
    """The reference `Encoder`; its state_dict keys equal the official `model.encoder.*` keys stripped."""

    encoding: torch.Tensor  # buffers (register_buffer), typed for the checker
    _group_channel_order: torch.Tensor

    def __init__(self, config: ClayV0Config) -> None:
        super().__init__()
        self.config = config
        self.latlon_embedding = nn.Linear(2, config.dim)
        self.time_embedding = nn.Linear(3, config.dim)
        self.patch_embedding = nn.ModuleDict(
            {name: Patchify(len(indices), config.dim, config.patch_size) for name, indices in config.band_groups}
        )
        self.transformer = Transformer(config.dim, config.depth, config.heads, config.dim_head, config.mlp_hidden)
        self.register_buffer("encoding", token_encoding(config), persistent=False)
        for name, indices in config.band_groups:
            self.register_buffer(f"_channels_{name}", torch.tensor(indices, dtype=torch.long), persistent=False)
        group_order = [index for _, indices in config.band_groups for index in indices]
        self.register_buffer("_group_channel_order", torch.tensor(group_order, dtype=torch.long), persistent=False)
        #: Inference without autograd/autocast builds the transformer input with fewer, larger ops
        #: (`_fused_transformer_input`); False forces the module-by-module reference path.
        self.fused_input = True

    def patchifies(self) -> list[Patchify]:
        """The per-group patch embeddings, in band-group order."""
        return [cast(Patchify, module) for module in self.patch_embedding.values()]

    def _check_size(self, pixels: torch.Tensor) -> None:
        expected = (self.config.image_size, self.config.image_size)
        if tuple(pixels.shape[-2:]) != expected:
            raise ClayInputError(
                f"pixels are {tuple(pixels.shape[-2:])} but this Clay v0 model takes {expected} chips; "
                f"use --chip-size {self.config.image_size} or load the model with image_size={pixels.shape[-1]}"
            )

    def patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] normalised pixels -> [B, G*L, D] patch tokens plus their fixed encodings."""
        self._check_size(pixels)
        groups = [
            patchify(pixels.index_select(1, getattr(self, f"_channels_{name}")))
            for name, patchify in self.patch_embedding.items()
        ]
        tokens = torch.stack(groups, dim=1) + self.encoding.to(groups[0].dtype)  # [B, G, L, D]
        return tokens.flatten(1, 2)

    def _fused_transformer_input(
        self, pixels: torch.Tensor, latlon: torch.Tensor, timestep: torch.Tensor
    ) -> torch.Tensor:
        """Same maths as the reference path, fewer passes over memory (inference only):
        patchify = one reordering copy + one GEMM per group (a conv with stride = kernel is a matmul
        over patches); the six LayerNorms share one normalisation, and their affine part, the conv
        bias and the fixed encoding are applied in one addcmul written straight into the output."""
        self._check_size(pixels)
        config = self.config
        batch, size, dim = pixels.shape[0], config.patch_size, config.dim
        grid, groups, patches_per_group = config.grid, config.num_groups, config.num_patches
        channels = self._group_channel_order.numel()
        ordered = pixels.index_select(1, self._group_channel_order)  # channels of each group contiguous
        patches = (
            ordered.view(batch, channels, grid, size, grid, size)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(batch * patches_per_group, channels, size * size)
        )
        projected = pixels.new_empty(groups, batch * patches_per_group, dim)
        first = 0
        for index, patchify in enumerate(self.patchifies()):
            width = patchify.proj.in_channels
            group_patches = patches[:, first : first + width].reshape(batch * patches_per_group, width * size * size)
            weight = patchify.proj.weight.reshape(dim, width * size * size)
            bias = cast(torch.Tensor, patchify.proj.bias)  # Conv2d built with a bias (Patchify)
            torch.addmm(bias, group_patches, weight.t(), out=projected[index])
            first += width
        normalised = F.layer_norm(projected, (dim,), eps=LAYER_NORM_EPS).view(groups, batch, patches_per_group, dim)
        norms = [patchify.norm for patchify in self.patchifies()]
        scale = torch.stack([norm.weight for norm in norms])[:, None, None, :]
        shift = torch.stack([norm.bias for norm in norms])[:, None, None, :] + self.encoding[:, None]
        tokens = pixels.new_empty(batch, groups * patches_per_group + 2, dim)
        target = tokens[:, : groups * patches_per_group].view(batch, groups, patches_per_group, dim).transpose(0, 1)
        torch.addcmul(shift, normalised, scale, out=target)
        tokens[:, -2] = self.latlon_embedding(latlon.to(tokens.dtype))
        tokens[:, -1] = self.time_embedding(timestep.to(tokens.dtype))
        return tokens

    def transformer_input(
        self,
        pixels: torch.Tensor,
        latlon: torch.Tensor,
        timestep: torch.Tensor,
        unmasked_indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The tokens that enter the transformer: (visible) patch tokens, then lat/lon, then time."""
        if (
            self.fused_input
            and unmasked_indices is None
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled(pixels.device.type)
            and pixels.dtype == torch.float32
        ):
            return self._fused_transformer_input(pixels, latlon, timestep)
        tokens = self.patch_tokens(pixels)
        if unmasked_indices is not None:  # MAE: keep the visible tokens, in the given order
            index = unmasked_indices.to(tokens.device, torch.long)[..., None].expand(-1, -1, tokens.shape[-1])
            tokens = torch.gather(tokens, 1, index)
        meta = torch.stack(
            (self.latlon_embedding(latlon.to(tokens.dtype)), self.time_embedding(timestep.to(tokens.dtype))), dim=1
        )
        return torch.cat((tokens, meta.to(tokens.dtype)), dim=1)

    def forward(
        self,
        pixels: torch.Tensor,
        latlon: torch.Tensor,
        timestep: torch.Tensor,
        unmasked_indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.transformer(self.transformer_input(pixels, latlon, timestep, unmasked_indices))


def encoder_flops(config: ClayV0Config, visible_tokens: int | None = None) -> int:
    """Multiply-add FLOPs (2 per MAC) of one chip through the encoder: convs, linears, attention matmuls.

    LayerNorm, GELU, softmax and additions are left out (they are memory-bound and small), matching
    what torch.utils.flop_counter counts."""
    patch_tokens = config.num_groups * config.num_patches if visible_tokens is None else visible_tokens
    tokens = patch_tokens + 2
    channels = sum(len(indices) for _, indices in config.band_groups)
    conv = 2 * channels * config.patch_size**2 * config.dim * config.num_patches
    meta = 2 * (2 + 3) * config.dim
    inner = config.heads * config.dim_head
    projections = 2 * tokens * config.dim * 3 * inner
    if not (config.heads == 1 and config.dim_head == config.dim):
        projections += 2 * tokens * inner * config.dim
    attention = 2 * 2 * tokens * tokens * inner
    mlp = 2 * 2 * tokens * config.dim * config.mlp_hidden
    return conv + meta + config.depth * (projections + attention + mlp)


# ----------------------------------------------------------------------------------------------
# Input encodings (spec 1.4) and the EmbeddingModel
# ----------------------------------------------------------------------------------------------


def _wrapped_angle(theta: np.ndarray) -> np.ndarray:
    """atan2(cos t, sin t): pi/2 - t wrapped to (-pi, pi], a single scalar per angle as v0 did."""
    return np.arctan2(np.cos(theta), np.sin(theta))


def encode_latlon(lonlat_deg: np.ndarray) -> np.ndarray:
    """[B, 2] (lon, lat) degrees -> [B, 2] float32 (sin(lat), wrapped lon), in v0's (lat, lon) order."""
    lonlat = np.asarray(lonlat_deg, dtype=np.float64).reshape(-1, 2)
    lat_value = np.sin(np.deg2rad(lonlat[:, 1]))
    lon_value = _wrapped_angle(np.deg2rad(lonlat[:, 0]))
    return np.stack((lat_value, lon_value), axis=1).astype(np.float32)


def encode_dates(dates: Sequence[datetime.date]) -> np.ndarray:
    """[B, 3] float32 (year, month, day) angles per spec 1.4 (month 12 = month 1, day 31 = day 1)."""
    values = np.array([(d.year, d.month, d.day) for d in dates], dtype=np.float64).reshape(-1, 3)
    year = 2 * math.pi * (values[:, 0] - 2012) / (2030 - 2012)
    month = 2 * math.pi * (values[:, 1] - 1) / 11
    day = 2 * math.pi * (values[:, 2] - 1) / 30
    return _wrapped_angle(np.stack((year, month, day), axis=1)).astype(np.float32)


class ClayV0Model(EmbeddingModel):
    family = FAMILY
    levels = ("mean", "patch", "group")
    default_level = "mean"

    def __init__(self, config: ClayV0Config) -> None:
        super().__init__(config, CLAY_V0, CLAY_V0.band_names)
        self.encoder = ClayV0Encoder(config)

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [key for key in ("pixels", "latlon", "timestep") if key not in batch]
        if missing:
            raise ClayInputError(f"Clay v0 batch lacks {', '.join(missing)}; build it with model.prepare(...)")
        return self.encoder(batch["pixels"], batch["latlon"], batch["timestep"])

    def pool(self, tokens: torch.Tensor, level: str) -> torch.Tensor:
        level = self.check_level(level)
        config = self.config
        patches = tokens[:, :-2, :].float()  # drop the lat/lon and time tokens
        if level == "mean":
            return patches.mean(dim=1)
        grouped = patches.reshape(tokens.shape[0], config.num_groups, config.grid, config.grid, tokens.shape[-1])
        return grouped if level == "group" else grouped.mean(dim=1)

    def filled_bands(self, bands: Sequence[str]) -> tuple[str, ...]:
        """Only bands some band group reads: a model without the sar/dem groups fills nothing for them."""
        used = {self.input_bands[index] for _, indices in self.config.band_groups for index in indices}
        return tuple(name for name in super().filled_bands(bands) if name in used)

    def embedding_shape(self, level: str) -> tuple[int, ...]:
        level = self.check_level(level)
        config = self.config
        return {
            "mean": (config.dim,),
            "patch": (config.grid, config.grid, config.dim),
            "group": (config.num_groups, config.grid, config.grid, config.dim),
        }[level]

    def memory_estimate(self, batch_size: int) -> MemoryEstimate:
        config = self.config
        return estimate_encoder_memory(
            parameters=sum(p.numel() for p in self.parameters()),
            tokens=config.num_tokens,
            dim=config.dim,
            inner_dim=config.heads * config.dim_head,
            mlp_hidden=config.mlp_hidden,
            heads=config.heads,
            batch_size=batch_size,
            input_values=len(self.input_bands) * config.image_size**2 + 5,
            precision=self.plan.precision,
            # patchify keeps two reordered copies of the pixels and three [tokens, dim] tensors
            staging_bytes=batch_size
            * 4
            * (2 * len(self.input_bands) * config.image_size**2 + 3 * config.num_tokens * config.dim),
        )

    def normalise(self, pixels: np.ndarray | torch.Tensor, bands: Sequence[str]) -> torch.Tensor:
        """Raw [B, C, H, W] in `bands` order -> normalised [B, 13, H, W]; NaN and absent bands -> 0 (the mean)."""
        data = torch.as_tensor(np.asarray(pixels) if not isinstance(pixels, torch.Tensor) else pixels)
        data = data.to(torch.float32)
        if data.ndim == 3:
            data = data[None]
        if data.ndim != 4 or data.shape[1] != len(bands):
            raise ClayInputError(
                f"pixels have shape {tuple(data.shape)} but {len(bands)} band names were given; expected [B, C, H, W]"
            )
        position = {name: i for i, name in enumerate(bands)}
        out = torch.zeros((data.shape[0], len(self.input_bands), *data.shape[-2:]), dtype=torch.float32)
        for index, name in enumerate(self.input_bands):
            if name in position:
                band = self.sensor.band(name)
                out[:, index] = (data[:, position[name]] - band.mean) / band.std
        return torch.nan_to_num_(out, nan=0.0, posinf=0.0, neginf=0.0)

    def prepare(
        self,
        pixels: np.ndarray | torch.Tensor,
        bands: Sequence[str],
        lonlat: np.ndarray | torch.Tensor | Sequence[Sequence[float]],
        dates: Sequence[datetime.date],
        gsd_m: float = 10.0,
    ) -> dict[str, torch.Tensor]:
        """Batch dict for `encode`. gsd_m is recorded by callers; v0 was trained on 10 m only."""
        normalised = self.normalise(pixels, bands)
        lonlat_array = np.asarray(lonlat.cpu() if isinstance(lonlat, torch.Tensor) else lonlat, dtype=np.float64)
        if lonlat_array.reshape(-1, 2).shape[0] != normalised.shape[0] or len(dates) != normalised.shape[0]:
            raise ClayInputError(
                f"{normalised.shape[0]} chips but {lonlat_array.reshape(-1, 2).shape[0]} lon/lat pairs and "
                f"{len(dates)} dates; give one of each per chip"
            )
        return {
            "pixels": normalised,
            "latlon": torch.from_numpy(encode_latlon(lonlat_array)),
            "timestep": torch.from_numpy(encode_dates(dates)),
        }

    def metadata(self, level: str | None = None, bands: Sequence[str] | None = None) -> dict[str, Any]:
        meta = super().metadata(level, bands)  # v0 embeds its 13 input bands always (missing ones filled)
        meta.update(
            chip_size=self.config.image_size,
            patch_size=self.config.patch_size,
            band_groups={name: [self.input_bands[i] for i in idx] for name, idx in self.config.band_groups},
            token_order="group-major (g, row, col), rows from the chip's top edge",
        )
        return meta


# ----------------------------------------------------------------------------------------------
# Family: recognising v0 checkpoints and reading their configuration
# ----------------------------------------------------------------------------------------------

PRESET_SIZES: dict[str, dict[str, Any]] = {
    # spec 2.1: (dim, depth, heads, dim_head, mlp_ratio) + decoder; "small" is the released model
    "tiny": dict(
        dim=256,
        depth=4,
        heads=4,
        dim_head=64,
        mlp_ratio=2.0,
        decoder_dim=128,
        decoder_depth=2,
        decoder_heads=2,
        decoder_dim_head=64,
        decoder_mlp_ratio=2.0,
    ),
    "small": dict(
        dim=768,
        depth=12,
        heads=12,
        dim_head=64,
        mlp_ratio=4.0,
        decoder_dim=512,
        decoder_depth=8,
        decoder_heads=8,
        decoder_dim_head=64,
        decoder_mlp_ratio=4.0,
    ),
    "medium": dict(
        dim=1024,
        depth=24,
        heads=16,
        dim_head=64,
        mlp_ratio=4.0,
        decoder_dim=512,
        decoder_depth=8,
        decoder_heads=16,
        decoder_dim_head=64,
        decoder_mlp_ratio=4.0,
    ),
    "large": dict(
        dim=1280,
        depth=32,
        heads=16,
        dim_head=64,
        mlp_ratio=4.0,
        decoder_dim=512,
        decoder_depth=8,
        decoder_heads=16,
        decoder_dim_head=64,
        decoder_mlp_ratio=4.0,
    ),
}

_ENCODER_MARKERS = ("latlon_embedding.weight", "time_embedding.weight")
_PATCH_KEY = re.compile(r"^patch_embedding\.([^.]+)\.proj\.weight$")
_LAYER_KEY = re.compile(r"^transformer\.layers\.(\d+)\.")
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ClayV0Config)}


def encoder_prefix(keys: Collection[str]) -> str | None:
    """The prefix under which a v0 encoder sits ("model.encoder.", "encoder.", ""), or None."""
    for prefix in ("model.encoder.", "encoder.", ""):
        if all(prefix + marker in keys for marker in _ENCODER_MARKERS) and any(
            key.startswith(prefix + "patch_embedding.") and key.endswith(".proj.weight") for key in keys
        ):
            return prefix
    return None


def _hparam_int(hyper_parameters: Mapping[str, Any], key: str, default: int) -> int:
    value = hyper_parameters.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _band_groups(weights: Mapping[str, torch.Tensor], hyper_parameters: Mapping[str, Any]) -> tuple:
    """Band groups in the order the checkpoint was trained with, checked against the conv shapes."""
    channels = {m.group(1): weights[key].shape[1] for key in weights if (m := _PATCH_KEY.match(key))}
    declared = hyper_parameters.get("band_groups")
    if isinstance(declared, Mapping) and set(declared) == set(channels):
        groups = tuple((str(name), tuple(int(i) for i in idx)) for name, idx in declared.items())
    else:
        defaults = dict(DEFAULT_BAND_GROUPS)
        unknown = sorted(set(channels) - set(defaults))
        if unknown:
            raise CheckpointError(
                f"checkpoint has band groups {', '.join(unknown)} that Clay v0 does not know and no "
                "band_groups hyper-parameter; pass band_groups=... to load_model"
            )
        groups = tuple((name, idx) for name, idx in DEFAULT_BAND_GROUPS if name in channels)
    for name, idx in groups:
        if len(idx) != channels[name]:
            raise CheckpointError(
                f"band group {name!r} lists {len(idx)} bands but its conv takes {channels[name]} channels"
            )
    return groups


def _attention_split(
    inner: int,
    dim: int,
    has_out_projection: bool,
    hyper_parameters: Mapping[str, Any],
    fixture_args: Mapping[str, Any],
) -> tuple[int, int]:
    """(heads, dim_head): shapes only give their product, so prefer what the checkpoint says."""
    if "heads" in fixture_args and "dim_head" in fixture_args:
        return int(fixture_args["heads"]), int(fixture_args["dim_head"])
    preset = PRESET_SIZES.get(str(hyper_parameters.get("model_size", "")))
    if preset and preset["dim"] == dim and preset["heads"] * preset["dim_head"] == inner:
        return preset["heads"], preset["dim_head"]
    if not has_out_projection:  # the reference drops to_out only for a single head as wide as dim
        return 1, inner
    # Every published v0 size uses 64-wide heads; one head as wide as dim would have no to_out.
    for dim_head in (64, 32, 16, 8, 4, 2, 1):
        if inner % dim_head == 0 and not (inner // dim_head == 1 and dim_head == dim):
            return inner // dim_head, dim_head
    return inner, 1


def config_from_weights(weights: Mapping[str, torch.Tensor], hyper_parameters: Mapping[str, Any]) -> ClayV0Config:
    """Architecture from tensor shapes; hyper-parameters only settle what shapes cannot (heads, image size)."""
    # `model_args`: written by clay_core.train for custom sizes; `fixture_model_args`: the parity fixture.
    fixture_args = hyper_parameters.get("model_args") or hyper_parameters.get("fixture_model_args")
    fixture_args = fixture_args if isinstance(fixture_args, Mapping) else {}
    dim = weights["latlon_embedding.weight"].shape[0]
    layers = {int(m.group(1)) for key in weights if (m := _LAYER_KEY.match(key))}
    depth = max(layers) + 1 if layers else 0
    groups = _band_groups(weights, hyper_parameters)
    patch_size = weights[f"patch_embedding.{groups[0][0]}.proj.weight"].shape[-1]
    values: dict[str, Any] = dict(PRESET_SIZES["small"])
    values.update(dim=dim, depth=depth, band_groups=groups, patch_size=patch_size)
    if depth:
        inner = weights["transformer.layers.0.0.to_qkv.weight"].shape[0] // 3
        hidden = weights["transformer.layers.0.1.net.1.weight"].shape[0]
        has_out = "transformer.layers.0.0.to_out.0.weight" in weights
        values["heads"], values["dim_head"] = _attention_split(inner, dim, has_out, hyper_parameters, fixture_args)
        values["mlp_ratio"] = hidden / dim
    size = PRESET_SIZES.get(str(hyper_parameters.get("model_size", "")))
    if size and size["dim"] == dim:
        values.update({k: v for k, v in size.items() if k.startswith("decoder_")})
    values.update({k: v for k, v in fixture_args.items() if k.startswith("decoder_") and k in _CONFIG_FIELDS})
    values["image_size"] = _hparam_int(hyper_parameters, "image_size", 512)
    mask_ratio = hyper_parameters.get("mask_ratio")
    if isinstance(mask_ratio, int | float):
        values["mask_ratio"] = float(mask_ratio)
    return ClayV0Config(**values)


@register_family
class ClayV0Family(ModelFamily):
    name = FAMILY

    def recognise(self, keys: Collection[str], hyper_parameters: Mapping[str, Any]) -> bool:
        return encoder_prefix(set(keys)) is not None

    def select_weights(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = encoder_prefix(set(state_dict))
        if prefix is None:
            raise CheckpointError("checkpoint holds no Clay v0 encoder (no latlon/time/patch embedding keys)")
        weights = strip_prefix(state_dict, prefix)
        if prefix == "":  # a bare encoder file: decoder/teacher keys would not be prefixed either
            weights = {k: v for k, v in weights.items() if not k.startswith(("decoder.", "teacher."))}
        return {f"encoder.{key}": value for key, value in weights.items()}  # ClayV0Model.encoder

    def config_from_checkpoint(
        self,
        state_dict: Mapping[str, torch.Tensor],
        hyper_parameters: Mapping[str, Any],
        overrides: Mapping[str, Any],
    ) -> ClayV0Config:
        weights = strip_prefix(self.select_weights(state_dict), "encoder.")
        try:
            config = config_from_weights(weights, hyper_parameters)
        except KeyError as exc:
            raise CheckpointError(f"Clay v0 checkpoint lacks {exc.args[0]}; the file is incomplete") from None
        unknown = sorted(set(overrides) - _CONFIG_FIELDS)
        if unknown:
            raise ClayInputError(
                f"unknown Clay v0 option(s) {', '.join(unknown)}; known: {', '.join(sorted(_CONFIG_FIELDS))}"
            )
        return dataclasses.replace(config, **overrides) if overrides else config

    def build(self, config: ClayV0Config) -> ClayV0Model:
        return ClayV0Model(config)


for _size, _values in PRESET_SIZES.items():
    register_preset(
        f"clay-v0-{_size}",
        family=FAMILY,
        config=ClayV0Config(**_values),
    )
