"""clay_core.change: rows matched by footprint (not row order), cosine distances per chip and per patch."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.change import cosine_distance, footprint_keys, match_footprints, per_patch_distance
from clay_core.errors import ClayInputError


def test_rows_are_matched_by_footprint_not_by_order():
    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10]], dtype=np.float64)
    keys_a, kind = footprint_keys(boxes, np.full(3, 32633), None)
    keys_b, _ = footprint_keys(boxes[[2, 0]] + 1e-4, np.full(2, 32633), None)  # reordered, sub-cm noise, one gone
    matched = match_footprints(keys_a, keys_b, kind)
    assert matched.rows_a.tolist() == [0, 2] and matched.rows_b.tolist() == [1, 0]
    assert matched.only_in_a == 1 and matched.only_in_b == 0 and kind == "utm_bbox"
    other_zone, _ = footprint_keys(boxes, np.full(3, 32632), None)
    with pytest.raises(ClayInputError, match="different places"):
        match_footprints(keys_a, other_zone)
    with pytest.raises(ClayInputError, match="share one footprint"):
        match_footprints(keys_a, keys_a + keys_a[:1])


def test_cosine_distance_per_chip_and_per_patch():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 2, 2, 3)).astype(np.float32)  # (h, w, d) per chip
    b = a.copy()
    b[1, 0, 1] = -b[1, 0, 1]  # one patch of chip 1 flipped
    b[3] = 0.0
    rows = np.arange(4)
    chip = cosine_distance(a.reshape(4, -1), b.reshape(4, -1), rows, rows)
    assert chip[0] == pytest.approx(0.0, abs=1e-6) and chip[1] > 0 and np.isnan(chip[3])
    patches = per_patch_distance(a.reshape(4, -1), b.reshape(4, -1), rows, rows, (2, 2, 3))
    assert patches.shape == (4, 2, 2)
    assert patches[1, 0, 1] == pytest.approx(2.0, abs=1e-6)
    changed = np.zeros((4, 2, 2), bool)
    changed[1, 0, 1] = True
    np.testing.assert_allclose(patches[:3][~changed[:3]], 0.0, atol=1e-6)
