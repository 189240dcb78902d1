"""clay_core.models.clay_v0_bands: v0's band groups, chosen by name without torch."""

from __future__ import annotations

import pytest

from clay_core.errors import ClayInputError
from clay_core.models.clay_v0_bands import DEFAULT_BAND_GROUPS, select_band_groups


def test_groups_come_in_v0_order_with_their_bands():
    assert select_band_groups("nir, rgb,,") == (("rgb", (2, 1, 0)), ("nir", (6,)))
    assert select_band_groups(",".join(name for name, _ in reversed(DEFAULT_BAND_GROUPS))) == DEFAULT_BAND_GROUPS


@pytest.mark.parametrize(("text", "named"), [("rgb,lidar", "lidar"), (" , ", "choose from rgb,rededge")])
def test_unknown_or_no_groups_are_one_line(text: str, named: str):
    with pytest.raises(ClayInputError, match=f"--band-groups {text!r}.*{named}"):
        select_band_groups(text)
