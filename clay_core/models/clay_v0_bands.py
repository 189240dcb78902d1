"""Clay v0's band groups, without torch: the command line offers them before any model is built.

Each group becomes one token per patch; the indices point into the 13 v0 bands (`sensors.CLAY_V0`):
B02 B03 B04 B05 B06 B07 B08 B8A B11 B12 VH VV DEM.
"""

from __future__ import annotations

from clay_core.errors import ClayInputError

# Reference dict order; the tuple order is the conv input-channel order (rgb = B04, B03, B02).
DEFAULT_BAND_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("rgb", (2, 1, 0)),
    ("rededge", (3, 4, 5, 7)),
    ("nir", (6,)),
    ("swir", (8, 9)),
    ("sar", (10, 11)),
    ("dem", (12,)),
)


def select_band_groups(text: str, option: str = "--band-groups") -> tuple[tuple[str, tuple[int, ...]], ...]:
    """ "rgb,nir" -> those groups with their band indices, in v0 order (the order the model's tokens take)."""
    known = dict(DEFAULT_BAND_GROUPS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ClayInputError(
            f"{option} {text!r}: unknown or no group(s) {', '.join(unknown)}; choose from {','.join(known)}"
        )
    return tuple((name, indices) for name, indices in DEFAULT_BAND_GROUPS if name in names)
