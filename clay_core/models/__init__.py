"""Embedding models: families register themselves in `registry`; `load_model` is the way in.

Family modules in this package (clay_v0, clay_v15, satclip, ...) are discovered on first use, so
adding one needs no edit here.

The names below are loaded on first access (PEP 562): importing this package, or a torch-free module
in it such as `clay_v0_bands`, must not import torch, so that `clay --help` and argument parsing stay
fast (~2 s of torch import per call otherwise)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clay_core.models.registry import (
        EmbeddingModel,
        ModelFamily,
        Preset,
        build_preset,
        discover_families,
        families,
        get_family,
        get_preset,
        load_image_model,
        load_model,
        presets,
        register_family,
        register_preset,
    )

__all__ = [
    "EmbeddingModel",
    "ModelFamily",
    "Preset",
    "build_preset",
    "discover_families",
    "families",
    "get_family",
    "get_preset",
    "load_image_model",
    "load_model",
    "presets",
    "register_family",
    "register_preset",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("clay_core.models.registry"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
