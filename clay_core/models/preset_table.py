"""The model presets as a torch-free table: name, family, input size and one line on what each is.

This is the one list of presets. The QGIS plugin reads it in-process (QGIS's Python has no torch) for
its model choices; the family modules register a config for each row (`registry.register_preset`), and
registering a name that is missing here, or with another family or input size, fails at import.
"""

from __future__ import annotations

from dataclasses import dataclass

from clay_core.errors import ClayInputError


@dataclass(frozen=True)
class PresetSpec:
    name: str
    family: str  # the registry's family name: "clay-v0", "clay-v1.5", "satclip"
    image_size: int | None  # chip side in pixels the preset's model takes; None for a location encoder
    patch_size: int | None
    description: str


_V0 = "13 bands, 512 px chips, 32 px patches"
_V15 = "random weights"

PRESET_TABLE: tuple[PresetSpec, ...] = (
    PresetSpec("clay-v0-tiny", "clay-v0", 512, 32, f"Clay v0 tiny: {_V0}, dim 256, depth 4"),
    PresetSpec(
        "clay-v0-small",
        "clay-v0",
        512,
        32,
        f"Clay v0 small: {_V0}, dim 768, depth 12 (the released architecture)",
    ),
    PresetSpec("clay-v0-medium", "clay-v0", 512, 32, f"Clay v0 medium: {_V0}, dim 1024, depth 24"),
    PresetSpec("clay-v0-large", "clay-v0", 512, 32, f"Clay v0 large: {_V0}, dim 1280, depth 32"),
    PresetSpec(
        "clay-v0-demo",
        "clay-v0",
        128,
        16,
        "Clay v0 architecture, tiny (dim 128, depth 4, Sentinel-2 band groups only), 128 px chips / 16 px "
        "patches, trained briefly on one Sentinel-2 L1C demo scene (models/MODEL_CARD.md); a working "
        "offline default, not the official Clay weights",
    ),
    PresetSpec("clay-v1.5-tiny", "clay-v1.5", 256, 8, f"Clay v1.5 encoder, tiny (192-d, depth 6); {_V15}"),
    PresetSpec("clay-v1.5-small", "clay-v1.5", 256, 8, f"Clay v1.5 encoder, small (384-d, depth 6); {_V15}"),
    PresetSpec("clay-v1.5-base", "clay-v1.5", 256, 8, f"Clay v1.5 encoder, base (768-d, depth 12); {_V15}"),
    PresetSpec(
        "clay-v1.5-large",
        "clay-v1.5",
        256,
        8,
        f"Clay v1.5 encoder, large (1024-d, depth 24); {_V15} (the released model is clay-v1.5.ckpt)",
    ),
    PresetSpec(
        "satclip-l10",
        "satclip",
        None,
        None,
        "SatCLIP location encoder, L=10 (load satclip-*-l10.ckpt for trained weights)",
    ),
    PresetSpec(
        "satclip-l40",
        "satclip",
        None,
        None,
        "SatCLIP location encoder, L=40 (load satclip-*-l40.ckpt for trained weights)",
    ),
)

PRESETS_BY_NAME: dict[str, PresetSpec] = {spec.name: spec for spec in PRESET_TABLE}

# The image presets the QGIS embed algorithms offer, in their enum order: saved models and scripts pass the
# index, so new presets go at the end. clay-v0-demo is left out: its weights are not in the plugin zip.
QGIS_MODEL_CHOICES: tuple[str, ...] = (
    "clay-v0-small",
    "clay-v0-tiny",
    "clay-v0-medium",
    "clay-v0-large",
    "clay-v1.5-large",
)
# The presets `clay train` can start from (training is Clay v0 only).
TRAINABLE_PRESETS: tuple[str, ...] = tuple(spec.name for spec in PRESET_TABLE if spec.family == "clay-v0")


def preset_spec(name: str) -> PresetSpec:
    """The table row of a preset; a one-line error listing the known names otherwise."""
    spec = PRESETS_BY_NAME.get(name)
    if spec is None:
        raise ClayInputError(
            f"unknown model preset {name!r}; use a checkpoint path or one of: {', '.join(sorted(PRESETS_BY_NAME))}"
        )
    return spec
