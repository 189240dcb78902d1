"""The model registry: presets, family discovery and recognition, load_model dispatch."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from clay_core.errors import CheckpointError, ClayInputError
from clay_core.models import build_preset, families, load_model, presets, registry
from clay_core.models.clay_v0 import ClayV0Model
from clay_core.models.registry import ModelFamily

# spec 2.1: encoder parameter counts of the reference layout
V0_ENCODER_PARAMETERS = {
    "clay-v0-tiny": 5_520_128,
    "clay-v0-small": 95_271_168,
    "clay-v0-medium": 315_894_784,
    "clay-v0-large": 604_686_080,
}


def test_v0_presets_are_registered() -> None:
    known = presets()
    for name in V0_ENCODER_PARAMETERS:
        assert known[name].family == "clay-v0"
    assert "clay-v0" in families()


@pytest.mark.parametrize("name", sorted(V0_ENCODER_PARAMETERS))
def test_preset_parameter_counts_match_the_reference(name: str) -> None:
    with torch.device("meta"):  # count without allocating hundreds of MB
        model = build_preset(name)
    assert sum(p.numel() for p in model.parameters()) == V0_ENCODER_PARAMETERS[name]
    assert model.config.image_size == 512 and model.config.patch_size == 32


def test_load_model_builds_a_preset_with_overrides() -> None:
    model = load_model("clay-v0-tiny", device="cpu", image_size=128, patch_size=16)
    assert isinstance(model, ClayV0Model) and not model.training
    assert model.name == "clay-v0-tiny" and model.checkpoint_sha256 is None
    assert model.config.grid == 8 and model.plan.precision == "fp32"
    assert model.embedding_shape("group") == (6, 8, 8, 256)


def test_unknown_preset_override_and_path_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ClayInputError, match="preset"):
        load_model("clay-v0-huge", device="cpu")
    with pytest.raises(ClayInputError, match="unknown model option"):
        load_model("clay-v0-tiny", device="cpu", depthh=3)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.ckpt", device="cpu")


class _TinyModel(registry.EmbeddingModel):
    family = "toy"
    levels = ("mean",)
    default_level = "mean"

    def __init__(self, width: int) -> None:
        from clay_core.sensors import CLAY_V0

        super().__init__({"width": width}, CLAY_V0, CLAY_V0.band_names[:1])
        self.layer = torch.nn.Linear(1, width)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.layer(batch["x"])

    def pool(self, tokens: torch.Tensor, level: str) -> torch.Tensor:
        return tokens

    def embedding_shape(self, level: str) -> tuple[int, ...]:
        return (self.config["width"],)


class _ToyFamily(ModelFamily):
    name = "toy"

    def recognise(self, keys: Collection[str], hyper_parameters: Mapping[str, Any]) -> bool:
        return "toy.layer.weight" in keys

    def config_from_checkpoint(self, state_dict, hyper_parameters, overrides) -> int:  # type: ignore[no-untyped-def]
        return int(state_dict["toy.layer.weight"].shape[0])

    def build(self, config: int) -> _TinyModel:
        return _TinyModel(config)

    def select_weights(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k.removeprefix("toy."): v for k, v in state_dict.items() if k.startswith("toy.")}


def test_a_new_family_plugs_in_by_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry.families()))
    registry.register_family(_ToyFamily)
    path = tmp_path / "toy.pt"
    torch.save({"toy.layer.weight": torch.ones(3, 1), "toy.layer.bias": torch.zeros(3)}, path)
    model = load_model(path, device="cpu")
    assert isinstance(model, _TinyModel) and model.checkpoint_sha256
    assert model.embed({"x": torch.ones(2, 1)}).tolist() == [[1.0] * 3] * 2
    assert model.metadata()["embedding_shape"] == [3]


def test_ambiguous_and_unknown_checkpoints_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry.families()))
    registry.register_family(_ToyFamily)

    class _Twin(_ToyFamily):
        name = "toy-twin"

    registry.register_family(_Twin)
    path = tmp_path / "toy.pt"
    torch.save({"toy.layer.weight": torch.ones(3, 1), "toy.layer.bias": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="several model families"):
        load_model(path, device="cpu")
    assert isinstance(load_model(path, device="cpu", family="toy"), _TinyModel)
    other = tmp_path / "other.pt"
    torch.save({"something.weight": torch.ones(2)}, other)
    with pytest.raises(CheckpointError, match="not a known model"):
        load_model(other, device="cpu")


def test_requested_thread_count_survives_building_the_model():
    """load_model(threads=N) must leave torch at N threads: building the model must not reset it."""
    import torch

    from clay_core.models import load_model

    before = torch.get_num_threads()
    try:
        model = load_model("clay-v0-tiny", device="cpu", threads=1)
        assert torch.get_num_threads() == 1 and model.plan.threads == 1
    finally:
        torch.set_num_threads(before)
