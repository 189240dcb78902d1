"""The distributed context (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK) and the collectives training uses.

In one process every function here is a no-op, so the loop is written once for both cases.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=world,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )


def start_distributed(context: Distributed, requested_device: str) -> str:
    """Join the process group; returns the device string this rank uses."""
    import torch.distributed as dist

    use_cuda = requested_device != "cpu" and torch.cuda.is_available()
    device = f"cuda:{context.local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(context.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return device


def finish_distributed(context: Distributed) -> None:
    """After a successful run: every rank finishes its last collective before any tears down.

    A rank that destroyed the group while its peer's gloo work was in flight aborted at exit ("terminate
    called without an active exception", 2 runs in 16 without this barrier, 0 in 16 with it). Only on
    success: after an error the barrier would hang."""
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()


def leave_distributed(context: Distributed) -> None:
    """Destroy the process group (success or not)."""
    if context.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_mean(value: torch.Tensor, context: Distributed) -> torch.Tensor:
    """The mean of `value` over ranks (itself in one process)."""
    if not context.enabled:
        return value
    import torch.distributed as dist

    reduced = value.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / context.world_size


def weights_digest(model: nn.Module) -> str:
    from clay_core.checkpoints import state_dict_sha256

    return state_dict_sha256(model)


def losses_digest(losses: Sequence[float]) -> str:
    return hashlib.sha256(np.asarray(losses, dtype=np.float64).tobytes()).hexdigest()


def gather_digests(model: nn.Module, losses: Sequence[float], context: Distributed) -> list[dict[str, str]]:
    """Per-rank sha256 of the weights and of the loss history: DDP must keep them identical."""
    mine = {"rank": str(context.rank), "weights": weights_digest(model), "losses": losses_digest(losses)}
    if not context.enabled:
        return [mine]
    import torch.distributed as dist

    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, mine)
    return list(gathered)
