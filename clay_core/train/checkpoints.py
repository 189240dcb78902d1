"""Writing training checkpoints (reading any checkpoint safely is `clay_core.checkpoints`).

Layout (readable with `torch.load(weights_only=True)`, by `load_model` and by Clay's code):
`state_dict` (`model.encoder.*`, `model.decoder.*`), `hyper_parameters` (the keys `CLAYModule` saves),
`epoch`, `global_step`, `pytorch-lightning_version`, and `clay_train` with the optimizer, scheduler,
RNG, data-order state and loss history (plain tensors and containers only). Every write is atomic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clay_core.atomic import atomic_output
from clay_core.errors import CheckpointError, ClayInputError
from clay_core.models.clay_v0 import ClayV0Config
from clay_core.models.clay_v0_mae import ClayV0MAE
from clay_core.train.data import TrainingOrder
from clay_core.train.model import architecture_args, model_size_name
from clay_core.train.settings import TrainSettings

LIGHTNING_VERSION = "2.1.0"  # the Lightning release v0 was trained with; Clay's code reads this layout
TRAIN_STATE_KEY = "clay_train"
TRAIN_STATE_FORMAT = 1
_LIGHTNING_KEYS = ("state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version")


@dataclass
class LoopState:
    """How far the run has come: what a checkpoint records and --resume restores."""

    global_step: int = 0
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0


def hyper_parameters(config: ClayV0Config, settings: TrainSettings) -> dict[str, Any]:
    """The key set `CLAYModule` saves (spec 3.2), so Clay's own code can rebuild a preset-size model;
    custom sizes add `model_args` (Clay's code cannot build those anyway)."""
    size = model_size_name(config)
    params: dict[str, Any] = {
        "model_size": size,
        "mask_ratio": settings.mask_ratio,
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "shuffle": False,
        "lr": settings.lr,
        "wd": settings.weight_decay,
        "b1": settings.betas[0],
        "b2": settings.betas[1],
        "embeddings_level": "mean",
        "band_groups": {name: tuple(indices) for name, indices in config.band_groups},
    }
    if size == "custom":
        params["model_args"] = architecture_args(config)
    return params


def config_state(config: ClayV0Config) -> dict[str, Any]:
    """The model config as plain containers (band groups as lists), for checkpoints and results."""
    state = dataclasses.asdict(config)
    state["band_groups"] = [[name, list(indices)] for name, indices in config.band_groups]
    return state


def training_checkpoint(
    mae: ClayV0MAE,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    settings: TrainSettings,
    loop: LoopState,
    order: TrainingOrder,
    items: int,
) -> dict[str, Any]:
    """Everything a checkpoint holds (see the module docstring)."""
    consumed = loop.global_step * settings.batch_size * settings.accumulate
    rng: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "state_dict": mae.lightning_state_dict(),
        "hyper_parameters": hyper_parameters(mae.config, settings),
        "epoch": order.epoch_of(consumed),
        "global_step": loop.global_step,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        TRAIN_STATE_KEY: {
            "format": TRAIN_STATE_FORMAT,
            "settings": settings.as_state(),
            "model_config": config_state(mae.config),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "data": {
                "seed": settings.seed,
                "items": items,
                "world_size": order.world_size,
                "samples_per_rank": consumed,
                "epoch": order.epoch_of(consumed),
            },
            "losses": list(loop.losses),
            "wall_s": loop.wall_s,
        },
    }


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file beside `path`, then rename: a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by `train` (weights_only); a clear error when it has no training state."""
    from clay_core.checkpoints import safe_torch_load

    if not path.is_file():
        raise ClayInputError(f"nothing to resume: {path} does not exist; drop --resume to start a new run")
    loaded = safe_torch_load(path)
    state = loaded.get(TRAIN_STATE_KEY) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping) or state.get("format") != TRAIN_STATE_FORMAT:
        raise CheckpointError(
            f"{path} holds no clay training state (weights only?); use --init {path} to start from its weights"
        )
    return dict(loaded)


def export_weights(checkpoint: Path, output: Path) -> Path:
    """A copy without the training state (like v0's save_weights_only): small enough to ship."""
    loaded = read_training_checkpoint(checkpoint)
    atomic_save({key: loaded[key] for key in _LIGHTNING_KEYS}, output)
    return output
