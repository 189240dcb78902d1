"""The torch-free preset table is the registry's list: same names, families and input sizes, and no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clay_core.errors import ClayInputError
from clay_core.models.preset_table import PRESET_TABLE, QGIS_MODEL_CHOICES, TRAINABLE_PRESETS, preset_spec
from clay_core.models.registry import presets, register_preset

REPO = Path(__file__).resolve().parents[3]


def test_the_registry_registers_exactly_the_table() -> None:
    registered = presets()
    assert sorted(registered) == sorted(spec.name for spec in PRESET_TABLE)
    for spec in PRESET_TABLE:
        preset = registered[spec.name]
        assert preset.family == spec.family
        assert getattr(preset.config, "image_size", None) == spec.image_size
        assert getattr(preset.config, "patch_size", None) == spec.patch_size
        assert preset.description == spec.description


def test_plugin_and_train_choices_are_table_rows() -> None:
    assert set(QGIS_MODEL_CHOICES) <= {spec.name for spec in PRESET_TABLE if spec.image_size}
    assert QGIS_MODEL_CHOICES[0] == "clay-v0-small"  # the enum's default (index 0) must not move
    assert TRAINABLE_PRESETS and all(preset_spec(name).family == "clay-v0" for name in TRAINABLE_PRESETS)


def test_an_unknown_name_is_one_clear_error() -> None:
    with pytest.raises(ClayInputError, match="unknown model preset 'clay-v9'.*clay-v0-tiny"):
        preset_spec("clay-v9")


def test_registering_a_preset_the_table_does_not_know_fails() -> None:
    tiny = presets()["clay-v0-tiny"].config
    with pytest.raises(ValueError, match="not in clay_core.models.preset_table"):
        register_preset("clay-v0-huge", family="clay-v0", config=tiny)
    with pytest.raises(ValueError, match="disagree"):
        register_preset("clay-v0-demo", family="clay-v0", config=tiny)  # 512 px, the table says 128
    assert presets()["clay-v0-demo"].config.image_size == 128  # the refused call changed nothing


def test_the_table_imports_without_torch() -> None:
    code = "import sys, clay_core.models.preset_table; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "False"
