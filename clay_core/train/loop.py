"""The training loop: one optimiser step after another, checkpoints every N steps, an exact --resume.

Each micro-batch's mask comes from its own generator seeded with (seed, rank, micro-batch number), and
the data order is a pure function of the seed (see `data`), so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clay_core.device import DevicePlan, plan_device
from clay_core.errors import ClayInputError
from clay_core.models.clay_v0 import ClayV0Model
from clay_core.models.clay_v0_mae import random_mask
from clay_core.progress import NullReporter, Reporter
from clay_core.train.checkpoints import (
    TRAIN_STATE_KEY,
    LoopState,
    atomic_save,
    config_state,
    read_training_checkpoint,
    training_checkpoint,
)
from clay_core.train.data import ChipTrainingSet, TrainingOrder, collate, open_sources, sample_seed
from clay_core.train.distributed import (
    Distributed,
    all_mean,
    finish_distributed,
    gather_digests,
    leave_distributed,
    start_distributed,
)
from clay_core.train.loss_plot import loss_plot_path, loss_plotting_available, try_loss_plot
from clay_core.train.model import build_models, make_optimizer, make_scheduler, model_size_name
from clay_core.train.settings import TrainResult, TrainSettings


def train(settings: TrainSettings, reporter: Reporter | None = None) -> TrainResult:
    """Run (or continue) MAE pre-training. Under torchrun every rank calls this; rank 0 reports and writes."""
    settings.validate()
    context = Distributed.from_environment()
    reporter = reporter if (reporter is not None and context.is_main) else NullReporter()
    settings, resumed = _resolve_run(settings)
    device_name = start_distributed(context, settings.device) if context.enabled else settings.device
    plan = plan_device(device_name, settings.precision, settings.threads)
    try:
        result = _Run(settings, resumed, context, plan, reporter).train()
        finish_distributed(context)
        return result
    finally:
        leave_distributed(context)


def _resolve_run(settings: TrainSettings) -> tuple[TrainSettings, dict[str, Any] | None]:
    """Refuse to clobber an existing checkpoint; on --resume take the run-defining options from it."""
    output = Path(settings.output)
    if settings.resume:
        loaded = read_training_checkpoint(output)
        return settings.resumed_from(dict(loaded[TRAIN_STATE_KEY]["settings"])), loaded
    if output.exists() and not settings.overwrite:
        raise ClayInputError(f"{output} exists; pass --resume to continue that run or --overwrite to replace it")
    return settings, None


@dataclass
class _Throughput:
    chips: int = 0
    started: float = 0.0

    def rate(self) -> float:
        return self.chips / max(time.perf_counter() - self.started, 1e-9)


class _Run:
    """One rank's run: the models, optimiser, schedule and data, built once, then stepped."""

    def __init__(
        self,
        settings: TrainSettings,
        resumed: Mapping[str, Any] | None,
        context: Distributed,
        plan: DevicePlan,
        reporter: Reporter,
    ) -> None:
        self.settings, self.context, self.plan, self.reporter = settings, context, plan, reporter
        self.device = plan.torch_device
        saved = resumed[TRAIN_STATE_KEY] if resumed is not None else None
        self.embedding_model, self.mae = build_models(
            settings,
            saved["model_config"] if saved is not None else None,
            resumed["state_dict"] if resumed is not None else None,
            reporter,
        )
        self.mae.to(self.device).train()
        self.optimizer = make_optimizer(self.mae, settings)
        self.scheduler = make_scheduler(self.optimizer, settings)
        self.loop = LoopState()
        if resumed is not None and saved is not None:
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["rng"]["torch"])
            self.loop = LoopState(
                global_step=int(resumed["global_step"]),
                losses=list(saved["losses"]),
                wall_s=float(saved["wall_s"]),
            )
        config = self.mae.config
        sources = open_sources(settings.sources, settings.source_options)
        self.dataset = ChipTrainingSet(
            sources,
            self.embedding_model.input_bands,
            config.image_size,
            settings.seed,
            settings.augment,
            settings.cache_mb,
        )
        _check_resumed_data(saved, len(self.dataset), context)
        self.per_step = settings.batch_size * settings.accumulate
        self.order = TrainingOrder(
            len(self.dataset),
            settings.seed,
            context.rank,
            context.world_size,
            start=self.loop.global_step * self.per_step,
        )
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=settings.batch_size,
            sampler=self.order,
            num_workers=settings.workers,
            collate_fn=collate,
            persistent_workers=settings.workers > 0,
        )
        self.batches: Iterator[dict[str, Any]] = iter(loader)
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.mae, device_ids=device_ids)
        self.model: nn.Module = self.ddp if self.ddp is not None else self.mae
        self.output = Path(settings.output)
        plotting = context.is_main and loss_plotting_available(reporter)
        self.plot_path = loss_plot_path(self.output) if plotting else None

    def train(self) -> TrainResult:
        settings, loop = self.settings, self.loop
        start_step = loop.global_step
        self._announce(start_step)
        self.reporter.start(max(settings.steps - start_step, 0), "training")
        throughput = _Throughput(started=time.perf_counter())
        plotted, last_saved = False, -1
        while loop.global_step < settings.steps:
            step_started = time.perf_counter()
            loss = self._optimizer_step(loop.global_step)
            loop.global_step += 1
            loop.losses.append(loss)
            throughput.chips += self.per_step * self.context.world_size
            loop.wall_s += time.perf_counter() - step_started
            self.reporter.advance(
                1,
                f"step {loop.global_step}/{settings.steps} | loss {loss:.4f} | "
                f"{throughput.rate():.1f} chips/s | lr {self.scheduler.get_last_lr()[0]:.2e}",
            )
            if loop.global_step % settings.checkpoint_every == 0 or loop.global_step == settings.steps:
                plotted, last_saved = self._save(), loop.global_step
        if last_saved != loop.global_step:  # nothing left to do (already at --steps): still leave a checkpoint
            plotted = self._save()
        return self._result(start_step, throughput, plotted)

    def _announce(self, start_step: int) -> None:
        config = self.mae.config
        parameters = sum(p.numel() for p in self.mae.parameters())
        self.reporter.log(
            f"training {model_size_name(config)} Clay v0 ({parameters:,} parameters, {config.image_size} px "
            f"chips, {config.patch_size} px patches) on {len(self.dataset)} chips, {self.plan.device} "
            f"{self.plan.precision}, {self.context.world_size} process(es), steps {start_step} -> "
            f"{self.settings.steps}"
        )

    def _optimizer_step(self, step: int) -> float:
        """One optimizer step over `accumulate` micro-batches; returns the loss averaged over ranks."""
        from clay_core.device import autocast

        settings, mae = self.settings, self.mae
        total = torch.zeros((), device=self.device)
        for micro in range(settings.accumulate):
            prepared = _prepare(self.embedding_model, next(self.batches), self.device)
            number = step * settings.accumulate + micro
            generator = torch.Generator().manual_seed(sample_seed(settings.seed, self.context.rank, number, 11))
            mask = random_mask(prepared["pixels"].shape[0], mae.groups, mae.patches, settings.mask_ratio, generator)
            last = micro == settings.accumulate - 1
            sync = self.ddp.no_sync() if (self.ddp is not None and not last) else contextlib.nullcontext()
            with sync:  # the backward pass too: no_sync defers the gradient all-reduce until the last one
                with autocast(self.plan):
                    loss = self.model(
                        prepared["pixels"],
                        prepared["latlon"],
                        prepared["timestep"],
                        mask.masked.to(self.device),
                        mask.unmasked.to(self.device),
                    )
                (loss / settings.accumulate).backward()
            total += loss.detach().float() / settings.accumulate
        if not torch.isfinite(total):
            raise FloatingPointError(f"training loss became {total.item()} at step {step + 1}; lower --lr")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return float(all_mean(total, self.context).item())

    def _save(self) -> bool:
        """Write the checkpoint (rank 0 only: every rank holds the same weights); True if the plot was too."""
        if not self.context.is_main:
            return False
        checkpoint = training_checkpoint(
            self.mae, self.optimizer, self.scheduler, self.settings, self.loop, self.order, len(self.dataset)
        )
        atomic_save(checkpoint, self.output)
        if self.plot_path is None:
            return False
        title = f"clay train: {self.output.name}"
        if self.settings.visible_loss_weight:  # say so: that loss is not the v0 loss
            title += f" (v0 loss + visible tokens x {self.settings.visible_loss_weight:g})"
        return try_loss_plot(self.loop.losses, self.plot_path, title, self.reporter)

    def _result(self, start_step: int, throughput: _Throughput, plotted: bool) -> TrainResult:
        elapsed = time.perf_counter() - throughput.started
        losses = self.loop.losses
        new_losses = losses[start_step:]
        return TrainResult(
            checkpoint=str(self.output),
            loss_plot=str(self.plot_path) if plotted else None,
            global_step=self.loop.global_step,
            start_step=start_step,
            final_loss=float(np.mean(new_losses[-10:])) if new_losses else None,
            first_loss=float(np.mean(new_losses[:10])) if new_losses else None,
            losses=list(losses),
            wall_s=round(elapsed, 3),
            chips_per_s=round(throughput.chips / max(elapsed, 1e-9), 3),
            world_size=self.context.world_size,
            device=self.plan.device,
            precision=self.plan.precision,
            chips=len(self.dataset),
            config=config_state(self.mae.config),
            rank_digests=gather_digests(self.mae, losses, self.context),
        )


def _prepare(model: ClayV0Model, batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    prepared = model.prepare(batch["pixels"], model.input_bands, batch["lonlat"], batch["dates"])
    return {key: value.to(device, non_blocking=True) for key, value in prepared.items()}


def _check_resumed_data(saved: Mapping[str, Any] | None, items: int, context: Distributed) -> None:
    if saved is None:
        return
    data = saved["data"]
    if int(data["items"]) != items or int(data["world_size"]) != context.world_size:
        raise ClayInputError(
            f"cannot resume exactly: the run used {data['items']} chips on {data['world_size']} process(es), "
            f"now {items} chips on {context.world_size}; use the same sources and process count "
            "(or --init CKPT to start a new run from its weights)"
        )
