"""What a training run is asked to do (`TrainSettings`) and what it reports back (`TrainResult`).

Torch-free on purpose: the command line and the QGIS algorithm build settings without loading torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clay_core.errors import ClayInputError
from clay_core.provenance import public_source

# Options that define the run; on --resume they come from the checkpoint, not the command line.
RUN_DEFINING = (
    "batch_size",
    "accumulate",
    "lr",
    "weight_decay",
    "betas",
    "restart_period",
    "restart_mult",
    "eta_min_factor",
    "mask_ratio",
    "seed",
    "augment",
    "visible_loss_weight",
)


@dataclass
class TrainSettings:
    sources: list[Any]  # source specs for `open_source` (paths, s3:// URLs, ...) or ChipSource objects
    output: Path
    preset: str = "clay-v0-tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ClayV0Config fields (image_size, dim, ...)
    init_checkpoint: str | None = None  # start from these weights (continued pre-training)
    source_options: dict[str, Any] = field(default_factory=dict)  # passed to open_source (chip_size, ...)
    steps: int = 1000
    batch_size: int = 8
    accumulate: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    restart_period: int = 1000
    restart_mult: int = 2
    eta_min_factor: float = 10.0
    mask_ratio: float = 0.75
    visible_loss_weight: float = 0.0  # opt-in, not v0: also score visible tokens with this weight
    checkpoint_every: int = 100
    seed: int = 42
    augment: bool = True
    workers: int = 0
    cache_mb: int = 2048
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None  # torch CPU threads per process (default: OMP_NUM_THREADS or all CPUs)
    resume: bool = False
    overwrite: bool = False

    def validate(self) -> None:
        if not self.sources:
            raise ClayInputError("no training source given; pass one or more chip folders, scenes or s3:// URLs")
        checks = [
            (self.steps > 0, f"--steps must be positive, got {self.steps}"),
            (self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}"),
            (self.accumulate > 0, f"--accumulate must be positive, got {self.accumulate}"),
            (self.checkpoint_every > 0, f"--checkpoint-every must be positive, got {self.checkpoint_every}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0.0 < self.mask_ratio < 1.0, f"--mask-ratio must be in (0, 1), got {self.mask_ratio}"),
            (
                self.visible_loss_weight >= 0.0,
                f"--visible-loss-weight must be >= 0, got {self.visible_loss_weight}",
            ),
            (self.restart_period > 0 and self.restart_mult >= 1, "restart period must be > 0 and mult >= 1"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ClayInputError(message)

    def as_state(self) -> dict[str, Any]:
        """Plain containers only (weights_only-safe)."""
        state = dataclasses.asdict(self)
        state["output"] = str(self.output)
        # Saved in the checkpoint, a file people share: sources as output files name them, without credentials.
        state["sources"] = [public_source(spec) if isinstance(spec, str) else repr(spec) for spec in self.sources]
        state["betas"] = list(self.betas)
        return state

    def resumed_from(self, saved: dict[str, Any]) -> TrainSettings:
        """These settings with the run-defining options (and preset) of a saved run."""
        merged = dataclasses.replace(self, **{key: saved[key] for key in RUN_DEFINING if key in saved})
        betas = tuple(merged.betas)
        merged.betas = (float(betas[0]), float(betas[1]))
        merged.preset = saved.get("preset", self.preset)
        return merged


@dataclass
class TrainResult:
    checkpoint: str
    loss_plot: str | None
    global_step: int
    start_step: int
    final_loss: float | None
    first_loss: float | None
    losses: list[float]
    wall_s: float
    chips_per_s: float
    world_size: int
    device: str
    precision: str
    chips: int
    config: dict[str, Any]
    rank_digests: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
