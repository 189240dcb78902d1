"""The model being trained (Clay v0 encoder + MAE decoder), built fresh, from --init weights or from a
resumed checkpoint; and the v0 optimiser and learning-rate schedule.

v0's choices: AdamW (lr 1e-4, weight decay 0.05, betas 0.9/0.95) and cosine warm restarts (T_0 1000,
T_mult 2, eta_min = 10 x lr: the learning rate *rises* within a cycle, as in v0), stepped after every
optimiser step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from clay_core.errors import CheckpointError, ClayInputError
from clay_core.models.clay_v0 import PRESET_SIZES, ClayV0Config, ClayV0Family, ClayV0Model
from clay_core.models.clay_v0_mae import ClayV0MAE
from clay_core.progress import Reporter
from clay_core.train.settings import TrainSettings

# What tensor shapes cannot tell a loader (heads vs head width, decoder sizes).
ARCHITECTURE_KEYS = (
    "dim",
    "depth",
    "heads",
    "dim_head",
    "mlp_ratio",
    "decoder_dim",
    "decoder_depth",
    "decoder_heads",
    "decoder_dim_head",
    "decoder_mlp_ratio",
)


def model_size_name(config: ClayV0Config) -> str:
    """The v0 preset size whose encoder *and* decoder this config has, else "custom"."""
    for name, values in PRESET_SIZES.items():
        if all(getattr(config, key) == value for key, value in values.items()):
            return name
    return "custom"


def architecture_args(config: ClayV0Config) -> dict[str, Any]:
    """The architecture fields a checkpoint of a custom-size model must carry to be rebuilt."""
    return {key: getattr(config, key) for key in ARCHITECTURE_KEYS}


def build_models(
    settings: TrainSettings,
    model_config: Mapping[str, Any] | None,
    weights: Mapping[str, torch.Tensor] | None,
    reporter: Reporter,
) -> tuple[ClayV0Model, ClayV0MAE]:
    """The embedding model (for its input preparation) and the MAE sharing its encoder.

    Resuming passes the saved `model_config` and the checkpoint's `model.*` weights; otherwise the
    architecture comes from the preset (or the --init checkpoint) and the weights from --init, if given."""
    torch.manual_seed(settings.seed)
    initial = None
    if model_config is not None:
        config = ClayV0Config(**dict(model_config))
    else:
        config, initial = _config_for_run(settings)
    embedding_model = ClayV0Model(config)
    mae = ClayV0MAE(config, encoder=embedding_model.encoder, visible_weight=settings.visible_loss_weight)
    if model_config is not None and weights is not None:
        mae.load_state_dict({key[len("model.") :]: value for key, value in weights.items()})
    elif initial is not None:
        _load_initial_weights(mae, initial, reporter)
    return embedding_model, mae


def _config_for_run(settings: TrainSettings) -> tuple[ClayV0Config, dict[str, torch.Tensor] | None]:
    """The architecture and, with --init, the starting weights (official `model.*` keys)."""
    from clay_core.checkpoints import read_checkpoint
    from clay_core.models.registry import apply_overrides, get_preset

    if settings.init_checkpoint:
        contents = read_checkpoint(settings.init_checkpoint)
        family = ClayV0Family()
        if not family.recognise(contents.state_dict.keys(), contents.hyper_parameters):
            raise CheckpointError(f"{settings.init_checkpoint} is not a Clay v0 checkpoint; --init needs one")
        config = family.config_from_checkpoint(contents.state_dict, contents.hyper_parameters, settings.model_overrides)
        return config, contents.state_dict
    preset = get_preset(settings.preset)
    if not isinstance(preset.config, ClayV0Config):
        raise ClayInputError(f"preset {settings.preset!r} is not a Clay v0 model; training supports clay-v0-* only")
    return apply_overrides(preset.config, settings.model_overrides), None


def _load_initial_weights(mae: ClayV0MAE, state: Mapping[str, torch.Tensor], reporter: Reporter) -> None:
    from clay_core.checkpoints import load_weights, strip_prefix
    from clay_core.models.clay_v0 import encoder_prefix

    prefix = encoder_prefix(set(state)) or "model.encoder."
    load_weights(mae.encoder, strip_prefix(state, prefix), source="--init checkpoint")
    decoder = strip_prefix(state, prefix.replace("encoder.", "decoder."))
    expected = mae.decoder.state_dict()
    if decoder and set(decoder) == set(expected) and all(decoder[k].shape == expected[k].shape for k in expected):
        mae.decoder.load_state_dict(decoder)
    else:
        reporter.log("the --init checkpoint has no matching decoder; the decoder starts from random weights", "warning")


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(),
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        betas=(settings.betas[0], settings.betas[1]),
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, settings: TrainSettings
) -> torch.optim.lr_scheduler.CosineAnnealingWarmRestarts:
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer,
        T_0=settings.restart_period,
        T_mult=settings.restart_mult,
        eta_min=settings.lr * settings.eta_min_factor,
    )
