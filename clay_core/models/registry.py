"""Model families, presets and `load_model`: the one door through which every model is built.

A *family* (Clay v0, Clay v1.5, SatCLIP, ...) lives in its own module in this package and registers
itself here; nothing in this file names a family. To add one, write `clay_core/models/<family>.py`:

    from clay_core.models.registry import EmbeddingModel, ModelFamily, register_family, register_preset

    @register_family
    class MyFamily(ModelFamily):
        name = "my-family"

        def recognise(self, keys, hyper_parameters) -> bool: ...        # is this checkpoint mine?
        def config_from_checkpoint(self, state_dict, hyper_parameters, overrides) -> MyConfig: ...
        def build(self, config) -> EmbeddingModel: ...                  # a fresh model, random weights
        def select_weights(self, state_dict) -> dict[str, Tensor]: ...  # keys for model.load_state_dict

    register_preset("my-family-small", family="my-family", config=MyConfig(...))

and add a row for "my-family-small" to the torch-free table in `preset_table.py` (the plugin's model list).

Modules in this package are imported on first use of the registry (`discover_families`), so a new
family file is picked up without editing `__init__.py` or this file.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import pkgutil
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from clay_core.device import DevicePlan, MemoryEstimate, autocast, plan_device
from clay_core.errors import CheckpointError, ClayInputError
from clay_core.sensors import Sensor

# ----------------------------------------------------------------------------------------------
# The model interface every family implements
# ----------------------------------------------------------------------------------------------


class EmbeddingModel(nn.Module):
    """An encoder that turns prepared batches into embeddings at named levels.

    Subclasses set the class/instance attributes below and implement `encode`, `pool`, `prepare`
    and may extend `metadata`. `embed` (device, autocast, no grad, float32 CPU out) is shared.
    """

    family: ClassVar[str] = ""
    levels: tuple[str, ...] = ()
    default_level: str = ""

    def __init__(self, config: Any, sensor: Sensor, input_bands: Sequence[str]) -> None:
        super().__init__()
        self.config = config
        self.sensor = sensor
        self.input_bands: tuple[str, ...] = tuple(input_bands)
        # A placeholder until load_model() places the model; plan_device() here would reset the thread count
        # that load_model() configured for the job (e.g. --threads 1).
        self.plan: DevicePlan = DevicePlan(
            device="cpu",
            name="cpu",
            capability=None,
            precision="fp32",
            threads=torch.get_num_threads(),
            reason="not placed by load_model yet",
        )
        self.checkpoint_sha256: str | None = None
        self.checkpoint_path: str | None = None
        self.name: str = self.family
        self.quantization: str | None = None  # "int8" after quantize_dynamic_int8

    # -- to implement per family ---------------------------------------------------------------
    def encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, tokens: torch.Tensor, level: str) -> torch.Tensor:
        raise NotImplementedError

    def prepare(
        self,
        pixels: np.ndarray | torch.Tensor,
        bands: Sequence[str],
        lonlat: np.ndarray | torch.Tensor | Sequence[Sequence[float]],
        dates: Sequence[datetime.date],
        gsd_m: float = 10.0,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def embedding_shape(self, level: str) -> tuple[int, ...]:
        """Shape of one row's embedding at `level` (without the batch axis)."""
        raise NotImplementedError

    def memory_estimate(self, batch_size: int) -> MemoryEstimate:
        """Peak memory of one `embed` batch on the plan's device (see device.estimate_encoder_memory)."""
        raise NotImplementedError

    @property
    def image_size(self) -> int | None:
        """Chip side in pixels the model is set up for (its position/patch grid); None for location models."""
        return None

    # -- shared ----------------------------------------------------------------------------------
    def check_level(self, level: str | None) -> str:
        chosen = level or self.default_level
        if chosen not in self.levels:
            raise ClayInputError(
                f"level {chosen!r} is not available for {self.family}; use one of {', '.join(self.levels)}"
            )
        return chosen

    def filled_bands(self, bands: Sequence[str]) -> tuple[str, ...]:
        """Bands the model needs that `bands` lacks: prepare() fills them with the band mean."""
        given = set(bands)
        return tuple(name for name in self.input_bands if name not in given)

    def apply_plan(self, plan: DevicePlan) -> EmbeddingModel:
        """Move the weights to the plan's device (weights stay fp32; autocast handles bf16/fp16)."""
        self.plan = plan
        self.to(plan.torch_device)
        return self

    def embed(self, batch: Mapping[str, torch.Tensor], level: str | None = None) -> torch.Tensor:
        """encode + pool without autograd, on the plan's device and precision; float32 on CPU out."""
        chosen = self.check_level(level)
        device = self.plan.torch_device
        moved = {
            key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()
        }
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(), autocast(self.plan):
                pooled = self.pool(self.encode(moved), chosen)
        finally:
            self.train(was_training)
        return pooled.float().cpu()

    def metadata(self, level: str | None = None, bands: Sequence[str] | None = None) -> dict[str, Any]:
        """What a GeoParquet file needs to say about the model (the `clay` metadata key).

        `bands`: the bands the sources give (None when they differ). A model that embeds exactly the bands
        it is given (Clay v1.5) lists those; one with a fixed input (Clay v0 fills the bands it lacks, the
        base here) lists its own input bands whatever `bands` says."""
        import clay_core

        chosen = self.check_level(level)
        inputs = [self.sensor.band(name) for name in self.input_bands]
        is_instance = dataclasses.is_dataclass(self.config) and not isinstance(self.config, type)
        config = dataclasses.asdict(self.config) if is_instance else dict(self.config)
        return {
            "model": self.name,
            "family": self.family,
            "clay_core_version": clay_core.__version__,
            "checkpoint_sha256": self.checkpoint_sha256,
            "checkpoint": Path(self.checkpoint_path).name if self.checkpoint_path else None,
            "sensor": self.sensor.name,
            "bands": list(self.input_bands),
            "wavelengths_um": [band.wavelength_um for band in inputs],
            "normalization": {"mean": [band.mean for band in inputs], "std": [band.std for band in inputs]},
            "level": chosen,
            "dtype": "float32",
            "precision": self.plan.precision + (f"+{self.quantization}" if self.quantization else ""),
            "embedding_shape": list(self.embedding_shape(chosen)),
            "config": config,
        }


# ----------------------------------------------------------------------------------------------
# Families and presets
# ----------------------------------------------------------------------------------------------


class ModelFamily:
    """How one model family is recognised in a checkpoint, configured and built.

    Subclass it, set `name`, implement the four methods and decorate the class with
    `@register_family` (an instance is registered)."""

    name: ClassVar[str] = ""
    #: When several families recognise a checkpoint, the highest priority wins (ties are an error).
    priority: ClassVar[int] = 0

    def recognise(self, keys: Collection[str], hyper_parameters: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def config_from_checkpoint(
        self,
        state_dict: Mapping[str, torch.Tensor],
        hyper_parameters: Mapping[str, Any],
        overrides: Mapping[str, Any],
    ) -> Any:
        raise NotImplementedError

    def build(self, config: Any) -> EmbeddingModel:
        raise NotImplementedError

    def select_weights(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors to load into `build(config)` (prefixes stripped, teacher/decoder dropped)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    config: Any  # the family's config dataclass (overrides are applied with dataclasses.replace)
    description: str = ""
    checkpoint: str | None = None  # shipped weights: load_model(name) loads this file instead of random weights


_FAMILIES: dict[str, ModelFamily] = {}
_PRESETS: dict[str, Preset] = {}
_DISCOVERED = False


def register_family(family: type[ModelFamily] | ModelFamily) -> Any:
    """Class decorator (or call with an instance): make a family known to `load_model`."""
    instance = family() if isinstance(family, type) else family
    if not instance.name:
        raise ValueError(f"{type(instance).__name__} must set a non-empty `name`")
    _FAMILIES[instance.name] = instance
    return family


def register_preset(
    name: str, *, family: str, config: Any, description: str = "", checkpoint: str | None = None
) -> Preset:
    """Give a row of the preset table (`clay_core.models.preset_table`) its config; the description defaults to
    the table's. A name that is not in the table, or a config of another family or input size, is a bug."""
    from clay_core.models.preset_table import PRESETS_BY_NAME

    spec = PRESETS_BY_NAME.get(name)
    if spec is None:
        raise ValueError(f"preset {name!r} is not in clay_core.models.preset_table.PRESET_TABLE; add it there")
    sizes = (getattr(config, "image_size", None), getattr(config, "patch_size", None))
    if spec.family != family or sizes != (spec.image_size, spec.patch_size):
        raise ValueError(
            f"preset {name!r}: family {family}, sizes {sizes} disagree with the preset table "
            f"({spec.family}, {(spec.image_size, spec.patch_size)})"
        )
    preset = Preset(
        name=name, family=family, config=config, description=description or spec.description, checkpoint=checkpoint
    )
    _PRESETS[name] = preset
    return preset


def discover_families() -> None:
    """Import every module of `clay_core.models` once so families and presets register themselves.

    A module that fails to import (e.g. a family whose optional dependency is missing) is reported
    as a warning instead of breaking every other family."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = importlib.import_module("clay_core.models")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in ("registry", "preset_table"):
            continue
        try:
            importlib.import_module(f"clay_core.models.{info.name}")
        except Exception as exc:  # noqa: BLE001 - one broken family must not hide the others
            warnings.warn(f"model module clay_core.models.{info.name} failed to import: {exc}", stacklevel=2)


def families() -> dict[str, ModelFamily]:
    discover_families()
    return dict(_FAMILIES)


def presets() -> dict[str, Preset]:
    discover_families()
    return dict(_PRESETS)


def get_family(name: str) -> ModelFamily:
    known = families()
    if name not in known:
        raise ClayInputError(f"unknown model family {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def get_preset(name: str) -> Preset:
    known = presets()
    if name not in known:
        raise ClayInputError(
            f"unknown model preset {name!r}; use a checkpoint path or one of: {', '.join(sorted(known))}"
        )
    return known[name]


def recognise_family(keys: Collection[str], hyper_parameters: Mapping[str, Any]) -> ModelFamily:
    """The family that claims a checkpoint; a clear error when none or several (same priority) do."""
    keys = set(keys)
    claimed = [family for family in families().values() if family.recognise(keys, hyper_parameters)]
    if not claimed:
        sample = ", ".join(sorted(keys)[:5]) or "(no tensors)"
        raise CheckpointError(
            f"checkpoint is not a known model (families: {', '.join(sorted(_FAMILIES))}); first keys: {sample}"
        )
    claimed.sort(key=lambda family: family.priority, reverse=True)
    if len(claimed) > 1 and claimed[0].priority == claimed[1].priority:
        names = ", ".join(family.name for family in claimed)
        raise CheckpointError(
            f"checkpoint matches several model families equally ({names}), so `clay` and QGIS cannot pick one; "
            "load it in Python with clay_core.models.load_model(PATH, family=NAME) and please report the file"
        )
    return claimed[0]


# ----------------------------------------------------------------------------------------------
# load_model
# ----------------------------------------------------------------------------------------------


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """`config` (a dataclass) with the given fields replaced; a clear error naming unknown fields."""
    if not overrides:
        return config
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ClayInputError(f"model overrides {sorted(overrides)} are not supported for this config")
    fields = {field.name for field in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ClayInputError(f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    return dataclasses.replace(config, **overrides)


def build_preset(name: str, **overrides: Any) -> EmbeddingModel:
    """A fresh (randomly initialised) model from a preset, on CPU in fp32."""
    preset = get_preset(name)
    model = get_family(preset.family).build(apply_overrides(preset.config, overrides))
    model.name = preset.name
    return model


QUANTIZATIONS = ("int8",)


def quantize_dynamic_int8(model: EmbeddingModel) -> EmbeddingModel:
    """Opt-in CPU fast path: int8 dynamic quantisation of every nn.Linear (weights int8 per tensor,
    activations quantised on the fly). CPU only; check accuracy on your data before relying on it
    (benchmarks/int8_accuracy.py measures cosine similarity of mean embeddings against fp32)."""
    from torch.ao.quantization import quantize_dynamic

    if model.plan.torch_device.type != "cpu":
        raise ClayInputError("int8 quantisation runs on CPU only; use --device cpu or drop --quantize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecation notice for quantized tensor creation
        quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    model.quantization = "int8"
    return model


def _looks_like_path(text: str) -> bool:
    return any(sep in text for sep in ("/", "\\")) or Path(text).suffix.lower() in {
        ".ckpt",
        ".pt",
        ".pth",
        ".bin",
        ".safetensors",
    }


def load_model(
    checkpoint_or_preset: str | Path,
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    family: str | None = None,
    quantize: str | None = None,
    **overrides: Any,
) -> EmbeddingModel:
    """Build a model from a checkpoint file (Lightning .ckpt, plain state_dict .pt, .safetensors) or
    a preset name ("clay-v0-small", ...), place it per the device plan and put it in eval mode.

    `overrides` change config fields (e.g. `image_size=256`); `family` forces a family when a
    checkpoint is ambiguous; `quantize="int8"` applies `quantize_dynamic_int8` (CPU, opt-in).
    Checkpoints are read with `torch.load(weights_only=True)` only."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ClayInputError(f"unknown quantisation {quantize!r}; use one of {', '.join(QUANTIZATIONS)}")
    from clay_core.checkpoints import load_weights, read_checkpoint

    plan = plan_device(device, precision, threads)
    source = checkpoint_or_preset_name = str(checkpoint_or_preset)
    is_preset = not isinstance(checkpoint_or_preset, Path) and source in presets()
    shipped = get_preset(source).checkpoint if is_preset else None
    if shipped:  # a preset with shipped weights (e.g. clay-v0-demo) loads its file
        checkpoint_or_preset, is_preset = Path(shipped), False
        source = shipped
    if is_preset:
        model = build_preset(source, **overrides)
    elif isinstance(checkpoint_or_preset, Path) or _looks_like_path(source) or Path(source).exists():
        contents = read_checkpoint(source)
        chosen = (
            get_family(family) if family else recognise_family(contents.state_dict.keys(), contents.hyper_parameters)
        )
        config = chosen.config_from_checkpoint(contents.state_dict, contents.hyper_parameters, overrides)
        model = chosen.build(config)
        load_weights(model, chosen.select_weights(contents.state_dict), source=source)
        model.checkpoint_sha256 = contents.sha256
        model.checkpoint_path = str(Path(source).resolve())
        model.name = f"{chosen.name}:{Path(source).name}"
    else:
        raise ClayInputError(
            f"{source!r} is neither a checkpoint file nor a known preset; presets: {', '.join(sorted(presets()))}"
        )
    if shipped:
        model.name = str(checkpoint_or_preset_name)
    model.eval()
    model.apply_plan(plan)
    return quantize_dynamic_int8(model) if quantize == "int8" else model


def load_image_model(
    checkpoint: str | None,
    preset: str | None,
    *,
    image_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
) -> EmbeddingModel:
    """The image model of an embed job: a checkpoint, or a preset (random weights: for tests and benchmarks).

    An `image_size` other than the model's own resizes the encoder's (fixed sin-cos) position grid."""
    from clay_core import validate

    validate.model_choice(checkpoint, preset)
    overrides: dict[str, Any] = {"image_size": int(image_size)} if image_size else {}
    source = str(checkpoint or preset)
    try:
        model = load_model(source, device=device, precision=precision, threads=threads, **overrides)
    except ClayInputError:
        # e.g. "unknown model option image_size" for a SatCLIP file: say what the file is instead.
        _refuse_other_kind(source)
        raise
    validate.model_family_for(model.family, "clay embed", validate.IMAGE_FAMILIES, source)
    return model


def _refuse_other_kind(source: str) -> None:
    """Raise the "wrong kind of model" line when `source` is a checkpoint/preset of a family that does not
    embed images; return quietly otherwise (or when the file cannot tell)."""
    from clay_core import validate

    try:
        if source in presets():
            family = get_preset(source).family
        else:
            from clay_core.checkpoints import read_checkpoint

            contents = read_checkpoint(source)
            family = recognise_family(contents.state_dict.keys(), contents.hyper_parameters).name
    except Exception:  # noqa: BLE001 - the original error is the one to report
        return
    validate.model_family_for(family, "clay embed", validate.IMAGE_FAMILIES, source)
