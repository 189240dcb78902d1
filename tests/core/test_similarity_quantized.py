"""The int8 first pass of the two-stage scoring (clay_core.similarity.QuantizedIndex): the top k stays identical
to exact float32 scoring, ties and adversarial rows included, and the codes are only built when needed."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core import similarity
from clay_core.similarity import SimilarityIndex, normalise_rows, top_k


@pytest.fixture(autouse=True)
def int8_when_the_sketch_cannot_prune(monkeypatch):
    """The int8 pass is off by default (slower than exact scoring on a quiet machine, benchmarks/similarity.py);
    these tests are about its correctness, so the probe may build it here."""
    monkeypatch.setattr(similarity, "INT8_WHEN_THE_SKETCH_CANNOT_PRUNE", True)


def isotropic_unit_rows(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    return normalise_rows(np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32))


def adversarial_rows(seed: int = 1) -> np.ndarray:
    """Isotropic rows plus what could trip a bounded first pass: exact duplicates that tie across the top-k
    boundary, near-duplicates closer than one int8 step, rows with one huge value (a coarse scale), all-zero
    rows and a row at the mean (centred norm 0)."""
    rng = np.random.default_rng(seed)
    rows = isotropic_unit_rows(3_000, 48, seed)
    popular = rows[:4].copy()
    for copy in range(40):  # 40 copies of 4 rows, spread over the file: ties of 40 at every k
        rows[100 + 70 * copy : 104 + 70 * copy] = popular
    near = rows[10] + 1e-5 * rng.standard_normal(48).astype(np.float32)
    rows[2_900:2_920] = normalise_rows(np.repeat(near[None], 20, axis=0) + 1e-6 * rng.standard_normal((20, 48)))
    rows[2_950:2_960] = 0.01 * rng.standard_normal((10, 48)).astype(np.float32)
    rows[2_950:2_960, 7] = 1.0
    rows[2_960:2_965] = normalise_rows(rows[2_960:2_965])
    rows[2_970:2_975] = 0.0
    return rows


def assert_same_top(fast_scores: np.ndarray, exact_scores: np.ndarray, k: int) -> None:
    best = top_k(exact_scores, k)
    np.testing.assert_array_equal(top_k(fast_scores, k), best)
    np.testing.assert_array_equal(fast_scores[best], exact_scores[best])  # bit for bit


@pytest.mark.parametrize("centred", [True, False])
def test_int8_pass_prunes_isotropic_rows_and_keeps_the_exact_top_k(centred):
    vectors = isotropic_unit_rows(20_000, 96)
    index = SimilarityIndex(vectors, already_normalised=True)
    for row in (0, 7_777, 19_999):
        direction = index.direction([row], centred=centred)
        fast = index.fast_scores(direction, exact_top=50, components=8, centred=centred)
        exact = index.scores(direction, centred=centred)
        assert index.projected(8).quantized is not None  # a flat spectrum: the sketch alone cannot prune
        assert len(fast.exact_rows) < len(vectors) // 20  # the int8 pass did prune
        assert_same_top(fast.scores, exact, 50)
        error = np.abs(fast.scores - exact)
        assert 0 < error.max() <= fast.error_bound  # approximate elsewhere, never beyond the bound


@pytest.mark.parametrize("centred", [True, False])
def test_int8_pass_keeps_ties_and_adversarial_rows_exact(centred):
    vectors = adversarial_rows()
    index = SimilarityIndex(vectors)
    index.projected(4, quantize=True)  # force the int8 pass whatever the probe says
    for row in (0, 1, 10, 2_900, 2_950, 500):
        direction = index.direction([row], centred=centred)
        exact = index.scores(direction, centred=centred)
        for k in (1, 3, 4, 5, 40, 41, 100, 165):  # boundaries inside and between the groups of 40 ties
            fast = index.fast_scores(direction, exact_top=k, components=4, centred=centred)
            assert_same_top(fast.scores, exact, k)
            assert np.abs(fast.scores - exact).max() <= fast.error_bound
    assert index.scores(index.direction([0], centred=centred), centred=centred)[2_970] == 0.0


def test_int8_error_bound_holds_for_every_row():
    vectors = adversarial_rows(seed=2)
    index = SimilarityIndex(vectors)
    sketch = index.projected(4, quantize=True)
    quantized = sketch.quantized
    assert quantized is not None and quantized.codes.dtype == np.int8
    assert sketch.projected.size == 0  # memory: the codes replace the sketch's rows, they are not held twice
    rng = np.random.default_rng(3)
    for _ in range(5):
        direction = normalise_rows(rng.standard_normal((1, 48)).astype(np.float32))[0]
        approximate, bound = quantized.dot(direction)
        true = index.unit_rows(slice(None)).astype(np.float64) @ direction.astype(np.float64)
        assert np.all(np.abs(approximate - true) <= bound)


def test_int8_codes_are_not_built_when_the_sketch_prunes():
    rng = np.random.default_rng(4)
    scale = np.arange(1, 97, dtype=np.float64) ** -1.5
    rows = rng.standard_normal((20_000, 96)) * scale
    rows[:, 0] += 1.0
    index = SimilarityIndex(normalise_rows(rows.astype(np.float32)), already_normalised=True)
    assert index.projected(16).quantized is None  # memory: the int8 copy (0.25x the vectors) only when needed


def test_by_default_a_flat_spectrum_falls_back_to_the_exact_pass(monkeypatch):
    monkeypatch.setattr(similarity, "INT8_WHEN_THE_SKETCH_CANNOT_PRUNE", False)
    index = SimilarityIndex(isotropic_unit_rows(20_000, 96), already_normalised=True)
    direction = index.direction([7], centred=True)
    fast = index.fast_scores(direction, exact_top=50, components=8, centred=True)
    assert index.projected(8).quantized is None and index.projected(8).cannot_prune  # straight to the exact pass
    np.testing.assert_array_equal(fast.scores, index.scores(direction, centred=True))
    assert fast.error_bound == 0.0 and len(fast.exact_rows) == 20_000
