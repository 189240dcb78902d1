"""MAE pre-training of Clay v0 (spec/clay.md 7.1), in one process or under `torchrun` (PyTorch DDP).

What it reproduces from v0: mask ratio 0.75 over all group tokens, the masked per-group MSE (with its
channel-order quirk), v0's optimiser and schedule (`model`). Added for users: random crops and flips,
gradient accumulation, bf16 autocast on CUDA only, atomic checkpoints every N steps in the official
Lightning layout (`checkpoints`) and an exact `--resume` (same step, optimizer/scheduler state and data
order; `data` and `loop` say how). One module per part:

    settings     TrainSettings / TrainResult (torch-free)
    distributed  the torchrun context and the collectives (no-ops in one process)
    data         chips -> deterministic, sharded, augmented samples
    model        the MAE being trained, the optimiser and the learning-rate schedule
    checkpoints  the checkpoint layout, atomic writes, reading a run back, weights-only export
    loss_plot    RUN.loss.png beside the checkpoint
    loop         `train()`: the steps, checkpoints and result
"""

from clay_core.train.checkpoints import (
    LIGHTNING_VERSION,
    TRAIN_STATE_FORMAT,
    TRAIN_STATE_KEY,
    LoopState,
    atomic_save,
    export_weights,
    hyper_parameters,
    read_training_checkpoint,
)
from clay_core.train.data import ChipTrainingSet, TrainingOrder, open_sources
from clay_core.train.distributed import Distributed
from clay_core.train.loop import train
from clay_core.train.loss_plot import loss_plot_path, write_loss_plot
from clay_core.train.model import architecture_args, make_optimizer, make_scheduler, model_size_name
from clay_core.train.settings import TrainResult, TrainSettings

__all__ = [
    "LIGHTNING_VERSION",
    "TRAIN_STATE_FORMAT",
    "TRAIN_STATE_KEY",
    "ChipTrainingSet",
    "Distributed",
    "LoopState",
    "TrainResult",
    "TrainSettings",
    "TrainingOrder",
    "architecture_args",
    "atomic_save",
    "export_weights",
    "hyper_parameters",
    "loss_plot_path",
    "make_optimizer",
    "make_scheduler",
    "model_size_name",
    "open_sources",
    "read_training_checkpoint",
    "train",
    "write_loss_plot",
]
