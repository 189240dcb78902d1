"""Training test helpers: a tiny learnable in-memory chip source and settings for a seconds-long run."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import numpy as np

from clay_core.sources.base import ChipData, ChipRecord
from clay_core.train import TrainSettings

TINY_MODEL = {
    "image_size": 32,
    "patch_size": 8,
    "dim": 32,
    "depth": 1,
    "heads": 2,
    "dim_head": 16,
    "mlp_ratio": 2.0,
    "decoder_dim": 16,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "decoder_dim_head": 8,
    "decoder_mlp_ratio": 2.0,
}
OFFICIAL_HPARAMS = {
    "model_size",
    "mask_ratio",
    "image_size",
    "patch_size",
    "shuffle",
    "lr",
    "wd",
    "b1",
    "b2",
    "embeddings_level",
    "band_groups",
}


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
            out.append(
                ChipRecord(
                    f"chip_{index:02d}",
                    f"mem://{index}",
                    datetime.date(2020, 6, 1),
                    32633,
                    bounds,
                    0,
                    index,
                    "33UUU",
                    self.size,
                    resolution,
                )
            )
        return out

    def read(self, record: ChipRecord) -> ChipData:
        rng = np.random.default_rng(record.col)
        yy, xx = np.mgrid[0 : self.size, 0 : self.size] / self.size
        phase = rng.uniform(0, 2 * np.pi, size=2)
        pattern = np.sin(2 * np.pi * xx + phase[0]) * np.cos(2 * np.pi * yy + phase[1])
        levels = np.linspace(1200.0, 3000.0, len(self.bands))[:, None, None]
        pixels = levels + 800.0 * pattern[None] * rng.uniform(0.5, 1.5, size=(len(self.bands), 1, 1))
        return ChipData(record, pixels.astype(np.float32), 0.0)


def tiny_settings(tmp_path: Path, name: str = "run.ckpt", **changes: Any) -> TrainSettings:
    """A few-second CPU run of a 32 px, 1-layer model on SyntheticChips, writing tmp_path/name."""
    base = TrainSettings(
        sources=[SyntheticChips()],
        output=tmp_path / name,
        preset="clay-v0-tiny",
        model_overrides=dict(TINY_MODEL),
        steps=4,
        batch_size=2,
        lr=1e-3,
        checkpoint_every=2,
        device="cpu",
        threads=1,
        cache_mb=64,
    )
    return dataclasses.replace(base, **changes)
