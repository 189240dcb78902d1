"""Embedding models: families register themselves in `registry`; `load_model` is the way in.

Family modules in this package (clay_v0, clay_v15, satclip, ...) are discovered on first use, so
adding one needs no edit here."""

from clay_core.models.registry import (
    EmbeddingModel,
    ModelFamily,
    Preset,
    build_preset,
    discover_families,
    families,
    get_family,
    get_preset,
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
    "load_model",
    "presets",
    "register_family",
    "register_preset",
]
