"""MAE pre-training of Clay v0 (spec/clay.md 7.1), in one process or under `torchrun` (PyTorch DDP).

What it reproduces from v0: mask ratio 0.75 over all group tokens, the masked per-group MSE (with its
channel-order quirk), AdamW (lr 1e-4, weight decay 0.05, betas 0.9/0.95) and a cosine warm-restart
schedule (T_0 1000, T_mult 2, eta_min = 10 x lr: the learning rate *rises* within a cycle, as in v0)
stepped after every optimizer step. Added for users: random crops and flips, gradient accumulation,
bf16 autocast on CUDA only, atomic checkpoints every N steps in the official Lightning layout, and an
exact `--resume` (same step, optimizer/scheduler state and data order).

Determinism, which `--resume` relies on: the data order is a pure function of (seed, epoch) and each
sample's crop/flip of (seed, epoch, index); each micro-batch's mask comes from its own generator seeded
with (seed, rank, micro-batch number). Nothing depends on the global RNG after the model is built.

Checkpoint layout (readable with `torch.load(weights_only=True)`, by `load_model` and by Clay's code):
`state_dict` (`model.encoder.*`, `model.decoder.*`), `hyper_parameters` (the keys `CLAYModule` saves),
`epoch`, `global_step`, `pytorch-lightning_version`, and `clay_train` with the optimizer, scheduler,
RNG, data-order state and loss history (plain tensors and containers only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clay_core.atomic import atomic_output
from clay_core.device import DevicePlan, plan_device
from clay_core.errors import CheckpointError, ClayInputError
from clay_core.models.clay_v0 import PRESET_SIZES, ClayV0Config, ClayV0Family, ClayV0Model
from clay_core.models.clay_v0_mae import ClayV0MAE, random_mask
from clay_core.progress import NullReporter, Reporter

LIGHTNING_VERSION = "2.1.0"  # the Lightning release v0 was trained with; Clay's code reads this layout
TRAIN_STATE_KEY = "clay_train"
TRAIN_STATE_FORMAT = 1

# Options that define the run; on --resume they come from the checkpoint, not the command line.
_RUN_DEFINING = (
    "batch_size", "accumulate", "lr", "weight_decay", "betas", "restart_period", "restart_mult",
    "eta_min_factor", "mask_ratio", "seed", "augment", "visible_loss_weight",
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
            (self.visible_loss_weight >= 0.0, f"--visible-loss-weight must be >= 0, got {self.visible_loss_weight}"),
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
        state["sources"] = [spec if isinstance(spec, str) else repr(spec) for spec in self.sources]
        state["betas"] = list(self.betas)
        return state


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


# ----------------------------------------------------------------------------------------------
# Distributed context (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK)
# ----------------------------------------------------------------------------------------------


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
        return cls(rank=int(os.environ.get("RANK", "0")), world_size=world,
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def _start_distributed(context: Distributed, requested_device: str) -> str:
    """Join the process group; returns the device string this rank uses."""
    import torch.distributed as dist

    use_cuda = requested_device != "cpu" and torch.cuda.is_available()
    device = f"cuda:{context.local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(context.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return device


def _all_mean(value: torch.Tensor, context: Distributed) -> torch.Tensor:
    if not context.enabled:
        return value
    import torch.distributed as dist

    reduced = value.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / context.world_size


# ----------------------------------------------------------------------------------------------
# Data: chips from sources, deterministic and resumable order, crops and flips
# ----------------------------------------------------------------------------------------------


def _sample_seed(*parts: int) -> int:
    """A 63-bit seed from integers (order-sensitive, well mixed)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32).view(np.uint64)[0]
               >> np.uint64(1))


class TrainingOrder(torch.utils.data.Sampler):
    """An endless stream of (epoch, item index) keys, sharded over ranks like DistributedSampler.

    Each epoch is a permutation drawn from (seed, epoch), padded by wrapping so every rank gets the
    same count; rank r takes positions r, r + world, ... Starting at `start` (samples this rank has
    already consumed) continues the stream exactly where a previous run stopped."""

    def __init__(self, items: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if items <= 0:
            raise ClayInputError("the training sources hold no chips")
        self.items, self.seed, self.rank, self.world_size, self.start = items, seed, rank, world_size, start
        self.per_rank = math.ceil(items / world_size)

    def epoch_of(self, consumed: int) -> int:
        return consumed // self.per_rank

    def _shard(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(_sample_seed(self.seed, epoch))
        order = torch.randperm(self.items, generator=generator).tolist()
        padded = (order * math.ceil(self.per_rank * self.world_size / self.items))[: self.per_rank * self.world_size]
        return padded[self.rank:: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        epoch, shard = -1, []
        while True:
            current, offset = divmod(position, self.per_rank)
            if current != epoch:
                epoch, shard = current, self._shard(current)
            yield (epoch, shard[offset])
            position += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number for its own bookkeeping
        return 2**62


class ChipTrainingSet(torch.utils.data.Dataset):
    """Chips of several sources, mapped onto the model's band order (absent bands -> NaN, filled later)."""

    def __init__(self, sources: Sequence[Any], model_bands: Sequence[str], image_size: int, seed: int,
                 augment: bool = True, cache_mb: int = 0) -> None:
        self.sources = list(sources)
        self.model_bands = tuple(model_bands)
        self.image_size, self.seed, self.augment = image_size, seed, augment
        self.items = [(index, record) for index, source in enumerate(self.sources) for record in source.records()]
        self._cache_budget = cache_mb * 1024 * 1024
        self._cache: dict[int, np.ndarray] = {}
        self._cache_bytes = 0
        small = [record for _, record in self.items if record.size < image_size]
        if small:
            raise ClayInputError(
                f"{len(small)} chip(s) are smaller ({small[0].size} px) than the model's {image_size} px input; "
                f"use chips of at least {image_size} px (e.g. --chip-size {image_size}) or a smaller --image-size"
            )

    def __len__(self) -> int:
        return len(self.items)

    def _pixels(self, index: int) -> np.ndarray:
        """[13, S, S] float32 raw values in model band order; cached in RAM while the budget lasts."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        source_index, record = self.items[index]
        source = self.sources[source_index]
        chip = source.read(record)
        position = {name: i for i, name in enumerate(source.bands)}
        pixels = np.full((len(self.model_bands), *chip.pixels.shape[-2:]), np.nan, dtype=np.float32)
        for out_index, name in enumerate(self.model_bands):
            if name in position:
                pixels[out_index] = chip.pixels[position[name]]
        if self._cache_bytes + pixels.nbytes <= self._cache_budget:
            self._cache[index] = pixels
            self._cache_bytes += pixels.nbytes
        return pixels

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        _, record = self.items[index]
        pixels = self._pixels(index)
        size = self.image_size
        height, width = pixels.shape[-2:]
        rng = np.random.default_rng(_sample_seed(self.seed, epoch, index, 7))
        if self.augment:
            top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        else:
            top, left = (height - size) // 2, (width - size) // 2
        crop = pixels[:, top: top + size, left: left + size]
        if self.augment and rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        if self.augment and rng.random() < 0.5:
            crop = crop[:, ::-1, :]
        return {
            "pixels": np.ascontiguousarray(crop),
            "lonlat": np.asarray(_crop_center_lonlat(record, top, left, size), dtype=np.float64),
            "date": record.date.toordinal(),
            "index": index,
        }


def _crop_center_lonlat(record: Any, top: int, left: int, size: int) -> tuple[float, float]:
    """The centre of a crop in lon/lat (flips do not move it): what the model's latlon token sees."""
    from clay_core.grid.utm import utm_to_lonlat

    xmin, _, _, ymax = record.utm_bounds
    x = xmin + (left + size / 2.0) * record.resolution_m
    y = ymax - (top + size / 2.0) * record.resolution_m
    lon, lat = utm_to_lonlat(record.epsg, x, y)
    return float(lon), float(lat)


def open_sources(specs: Sequence[Any], options: Mapping[str, Any]) -> list[Any]:
    """Open each spec with `open_source`; ChipSource objects (library callers, tests) pass through."""
    opened = []
    for spec in specs:
        if isinstance(spec, str | Path):
            from clay_core.sources import open_source

            opened.append(open_source(str(spec), **dict(options)))
        else:
            opened.append(spec)
    return opened


# ----------------------------------------------------------------------------------------------
# Model, optimizer, schedule
# ----------------------------------------------------------------------------------------------


def model_size_name(config: ClayV0Config) -> str:
    """The v0 preset size whose encoder *and* decoder this config has, else "custom"."""
    for name, values in PRESET_SIZES.items():
        if all(getattr(config, key) == value for key, value in values.items()):
            return name
    return "custom"


def architecture_args(config: ClayV0Config) -> dict[str, Any]:
    """What tensor shapes cannot tell a loader (heads vs head width, decoder sizes)."""
    keys = ("dim", "depth", "heads", "dim_head", "mlp_ratio", "decoder_dim", "decoder_depth", "decoder_heads",
            "decoder_dim_head", "decoder_mlp_ratio")
    return {key: getattr(config, key) for key in keys}


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


def _config_for_run(settings: TrainSettings) -> tuple[ClayV0Config, dict[str, torch.Tensor] | None]:
    """The architecture and, with --init, the starting weights (official `model.*` keys)."""
    from clay_core.checkpoints import read_checkpoint
    from clay_core.models.registry import apply_overrides, get_preset

    if settings.init_checkpoint:
        contents = read_checkpoint(settings.init_checkpoint)
        family = ClayV0Family()
        if not family.recognise(contents.state_dict.keys(), contents.hyper_parameters):
            raise CheckpointError(f"{settings.init_checkpoint} is not a Clay v0 checkpoint; --init needs one")
        config = family.config_from_checkpoint(contents.state_dict, contents.hyper_parameters,
                                               settings.model_overrides)
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
        reporter.log("the --init checkpoint has no matching decoder; the decoder starts from random weights",
                     "warning")


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                             betas=tuple(settings.betas))


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings) -> Any:
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=settings.restart_period, T_mult=settings.restart_mult,
        eta_min=settings.lr * settings.eta_min_factor,
    )


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


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
    return loaded


@dataclass
class LoopState:
    global_step: int = 0
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0


def _checkpoint(mae: ClayV0MAE, optimizer: Any, scheduler: Any, settings: TrainSettings, loop: LoopState,
                order: TrainingOrder, items: int) -> dict[str, Any]:
    consumed = loop.global_step * settings.batch_size * settings.accumulate
    rng = {"torch": torch.get_rng_state()}
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
            "model_config": _config_state(mae.config),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "data": {"seed": settings.seed, "items": items, "world_size": order.world_size,
                     "samples_per_rank": consumed, "epoch": order.epoch_of(consumed)},
            "losses": list(loop.losses),
            "wall_s": loop.wall_s,
        },
    }


def _config_state(config: ClayV0Config) -> dict[str, Any]:
    state = dataclasses.asdict(config)
    state["band_groups"] = [[name, list(indices)] for name, indices in config.band_groups]
    return state


def write_loss_plot(losses: Sequence[float], path: Path, title: str) -> Path | None:
    """Loss per optimizer step (and a moving average) as a PNG, written atomically."""
    if not losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = np.arange(1, len(losses) + 1)
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    axes.plot(steps, losses, lw=0.8, alpha=0.5, label="loss per step")
    window = max(1, min(50, len(losses) // 10))
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes.plot(steps[window - 1:], smooth, lw=1.8, label=f"moving mean ({window} steps)")
    axes.set(xlabel="optimizer step", ylabel="masked reconstruction MSE (v0 loss)", title=title)
    axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        with atomic_output(path) as temporary:
            figure.savefig(temporary, format="png")
    finally:
        plt.close(figure)
    return path


def _loss_plotting_available(reporter: Reporter) -> bool:
    """The plot is a convenience: without a working matplotlib, training goes on without it."""
    try:
        import matplotlib  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        reporter.log(f"no loss plot: matplotlib cannot be imported ({type(exc).__name__}: {exc}); "
                     "pip install matplotlib to get one", "warning")
        return False
    return True


def _try_loss_plot(losses: Sequence[float], path: Path, title: str, reporter: Reporter) -> bool:
    """write_loss_plot, but a failure only warns: it must never cost the checkpoint or the run."""
    try:
        return write_loss_plot(losses, path, title) is not None
    except Exception as exc:  # noqa: BLE001 - any plotting/backend/disk error is non-fatal here
        reporter.log(f"loss plot {path} not written ({type(exc).__name__}: {exc})", "warning")
        return False


def loss_plot_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".loss.png")


def export_weights(checkpoint: Path, output: Path) -> Path:
    """A copy without the training state (like v0's save_weights_only): small enough to ship."""
    loaded = read_training_checkpoint(checkpoint)
    slim = {key: loaded[key] for key in ("state_dict", "hyper_parameters", "epoch", "global_step",
                                          "pytorch-lightning_version")}
    atomic_save(slim, output)
    return output


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "pixels": torch.from_numpy(np.stack([s["pixels"] for s in samples])),
        "lonlat": np.stack([s["lonlat"] for s in samples]),
        "dates": [datetime.date.fromordinal(int(s["date"])) for s in samples],
    }


def _prepare(model: ClayV0Model, batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    prepared = model.prepare(batch["pixels"], model.input_bands, batch["lonlat"], batch["dates"])
    return {key: value.to(device, non_blocking=True) for key, value in prepared.items()}


def _weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _losses_digest(losses: Sequence[float]) -> str:
    return hashlib.sha256(np.asarray(losses, dtype=np.float64).tobytes()).hexdigest()


def _resolve_run(settings: TrainSettings) -> tuple[TrainSettings, dict[str, Any] | None]:
    """Refuse to clobber an existing checkpoint; on --resume take the run-defining options from it."""
    output = Path(settings.output)
    if settings.resume:
        loaded = read_training_checkpoint(output)
        saved = dict(loaded[TRAIN_STATE_KEY]["settings"])
        merged = dataclasses.replace(settings, **{key: saved[key] for key in _RUN_DEFINING if key in saved})
        merged.betas = tuple(merged.betas)
        merged.preset = saved.get("preset", settings.preset)
        return merged, loaded
    if output.exists() and not settings.overwrite:
        raise ClayInputError(f"{output} exists; pass --resume to continue that run or --overwrite to replace it")
    return settings, None


def train(settings: TrainSettings, reporter: Reporter | None = None) -> TrainResult:
    """Run (or continue) MAE pre-training; see the module docstring. Under torchrun every rank calls this."""
    settings.validate()
    context = Distributed.from_environment()
    reporter = reporter if (reporter is not None and context.is_main) else NullReporter()
    settings, resumed = _resolve_run(settings)
    device_name = _start_distributed(context, settings.device) if context.enabled else settings.device
    plan = plan_device(device_name, settings.precision, settings.threads)
    try:
        result = _train(settings, resumed, context, plan, reporter)
        if context.enabled:
            import torch.distributed as dist

            # Every rank finishes its last collective before any tears down: a rank that destroyed the group while
            # its peer's gloo work was in flight aborted at exit ("terminate called without an active exception",
            # 2 runs in 16 without this barrier, 0 in 16 with it). Only on success: after an error it would hang.
            dist.barrier()
        return result
    finally:
        if context.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _build(settings: TrainSettings, resumed: Mapping[str, Any] | None,
           reporter: Reporter) -> tuple[ClayV0Model, ClayV0MAE]:
    torch.manual_seed(settings.seed)
    if resumed is not None:
        saved = dict(resumed[TRAIN_STATE_KEY]["model_config"])
        config = ClayV0Config(**saved)
        initial = None
    else:
        config, initial = _config_for_run(settings)
    embedding_model = ClayV0Model(config)
    mae = ClayV0MAE(config, encoder=embedding_model.encoder, visible_weight=settings.visible_loss_weight)
    if resumed is not None:
        mae.load_state_dict({key[len("model."):]: value for key, value in resumed["state_dict"].items()})
    elif initial is not None:
        _load_initial_weights(mae, initial, reporter)
    return embedding_model, mae


def _train(settings: TrainSettings, resumed: Mapping[str, Any] | None, context: Distributed, plan: DevicePlan,
           reporter: Reporter) -> TrainResult:
    device = plan.torch_device
    embedding_model, mae = _build(settings, resumed, reporter)
    config = mae.config
    mae.to(device).train()
    optimizer = make_optimizer(mae, settings)
    scheduler = make_scheduler(optimizer, settings)
    loop = LoopState()
    if resumed is not None:
        state = resumed[TRAIN_STATE_KEY]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        loop = LoopState(global_step=int(resumed["global_step"]), losses=list(state["losses"]),
                         wall_s=float(state["wall_s"]))

    sources = open_sources(settings.sources, settings.source_options)
    dataset = ChipTrainingSet(sources, embedding_model.input_bands, config.image_size, settings.seed,
                              settings.augment, settings.cache_mb)
    _check_resumed_data(resumed, len(dataset), context)
    per_step = settings.batch_size * settings.accumulate
    order = TrainingOrder(len(dataset), settings.seed, context.rank, context.world_size,
                          start=loop.global_step * per_step)
    loader = torch.utils.data.DataLoader(dataset, batch_size=settings.batch_size, sampler=order,
                                         num_workers=settings.workers, collate_fn=_collate,
                                         persistent_workers=settings.workers > 0)
    model: nn.Module = mae
    if context.enabled:
        model = nn.parallel.DistributedDataParallel(mae, device_ids=[device.index] if device.type == "cuda" else None)

    output = Path(settings.output)
    plot_path = loss_plot_path(output) if context.is_main and _loss_plotting_available(reporter) else None
    plotted = False
    start_step = loop.global_step
    remaining = max(settings.steps - start_step, 0)
    reporter.log(f"training {model_size_name(config)} Clay v0 ({sum(p.numel() for p in mae.parameters()):,} "
                 f"parameters, {config.image_size} px chips, {config.patch_size} px patches) on {len(dataset)} "
                 f"chips, {plan.device} {plan.precision}, {context.world_size} process(es), "
                 f"steps {start_step} -> {settings.steps}")
    reporter.start(remaining, "training")
    batches = iter(loader)
    chips_done, started = 0, time.perf_counter()
    last_saved = -1
    while loop.global_step < settings.steps:
        step_started = time.perf_counter()
        loss = _optimizer_step(model, mae, embedding_model, batches, optimizer, scheduler, settings, context,
                               plan, loop.global_step)
        loop.global_step += 1
        loop.losses.append(loss)
        chips_done += per_step * context.world_size
        loop.wall_s += time.perf_counter() - step_started
        rate = chips_done / max(time.perf_counter() - started, 1e-9)
        reporter.advance(1, f"loss {loss:.4f} | {rate:.1f} chips/s | lr {scheduler.get_last_lr()[0]:.2e}")
        if loop.global_step % settings.checkpoint_every == 0 or loop.global_step == settings.steps:
            plotted = _save(mae, optimizer, scheduler, settings, loop, order, len(dataset), context, output,
                            plot_path, reporter)
            last_saved = loop.global_step
    if last_saved != loop.global_step:  # nothing left to do (already at --steps): still leave a checkpoint
        plotted = _save(mae, optimizer, scheduler, settings, loop, order, len(dataset), context, output,
                        plot_path, reporter)
    elapsed = time.perf_counter() - started
    digests = _gather_digests(mae, loop.losses, context)
    new_losses = loop.losses[start_step:]
    return TrainResult(
        checkpoint=str(output),
        loss_plot=str(plot_path) if plotted else None,
        global_step=loop.global_step,
        start_step=start_step,
        final_loss=float(np.mean(new_losses[-10:])) if new_losses else None,
        first_loss=float(np.mean(new_losses[:10])) if new_losses else None,
        losses=list(loop.losses),
        wall_s=round(elapsed, 3),
        chips_per_s=round(chips_done / max(elapsed, 1e-9), 3),
        world_size=context.world_size,
        device=plan.device,
        precision=plan.precision,
        chips=len(dataset),
        config=_config_state(config),
        rank_digests=digests,
    )


def _check_resumed_data(resumed: Mapping[str, Any] | None, items: int, context: Distributed) -> None:
    if resumed is None:
        return
    data = resumed[TRAIN_STATE_KEY]["data"]
    if int(data["items"]) != items or int(data["world_size"]) != context.world_size:
        raise ClayInputError(
            f"cannot resume exactly: the run used {data['items']} chips on {data['world_size']} process(es), "
            f"now {items} chips on {context.world_size}; use the same sources and process count "
            "(or --init CKPT to start a new run from its weights)"
        )


def _optimizer_step(model: nn.Module, mae: ClayV0MAE, embedding_model: ClayV0Model, batches: Iterator[Any],
                    optimizer: Any, scheduler: Any, settings: TrainSettings, context: Distributed,
                    plan: DevicePlan, step: int) -> float:
    """One optimizer step over `accumulate` micro-batches; returns the loss averaged over ranks."""
    from clay_core.device import autocast

    device = plan.torch_device
    total = torch.zeros((), device=device)
    for micro in range(settings.accumulate):
        prepared = _prepare(embedding_model, next(batches), device)
        number = step * settings.accumulate + micro
        generator = torch.Generator().manual_seed(_sample_seed(settings.seed, context.rank, number, 11))
        mask = random_mask(prepared["pixels"].shape[0], mae.groups, mae.patches, settings.mask_ratio, generator)
        last = micro == settings.accumulate - 1
        sync = contextlib.nullcontext() if (last or not context.enabled) else model.no_sync()
        with sync:
            with autocast(plan):
                loss = model(prepared["pixels"], prepared["latlon"], prepared["timestep"],
                             mask.masked.to(device), mask.unmasked.to(device))
            (loss / settings.accumulate).backward()
        total += loss.detach().float() / settings.accumulate
    if not torch.isfinite(total):
        raise FloatingPointError(f"training loss became {total.item()} at step {step + 1}; lower --lr")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return float(_all_mean(total, context).item())


def _save(mae: ClayV0MAE, optimizer: Any, scheduler: Any, settings: TrainSettings, loop: LoopState,
          order: TrainingOrder, items: int, context: Distributed, output: Path, plot_path: Path | None,
          reporter: Reporter) -> bool:
    """Write the checkpoint (rank 0 only: every rank holds the same weights); True when the plot was too."""
    if not context.is_main:
        return False
    atomic_save(_checkpoint(mae, optimizer, scheduler, settings, loop, order, items), output)
    if plot_path is None:
        return False
    title = f"clay train: {output.name}"
    if settings.visible_loss_weight:  # say so: that loss is not the v0 loss
        title += f" (v0 loss + visible tokens x {settings.visible_loss_weight:g})"
    return _try_loss_plot(loop.losses, plot_path, title, reporter)


def _gather_digests(mae: ClayV0MAE, losses: Sequence[float], context: Distributed) -> list[dict[str, str]]:
    """Per-rank sha256 of the weights and of the loss history: DDP must keep them identical."""
    mine = {"rank": str(context.rank), "weights": _weights_digest(mae), "losses": _losses_digest(losses)}
    if not context.enabled:
        return [mine]
    import torch.distributed as dist

    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, mine)
    return list(gathered)
