"""The two-stage scoring (clay_core.similarity.ProjectedIndex): the top k stays identical to exact float32 scoring,
ties and adversarial rows included, and data the sketch cannot prune goes straight to the exact pass."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.similarity import SimilarityIndex, normalise_rows, top_k


def isotropic_unit_rows(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    return normalise_rows(np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32))


def embedding_like_rows(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """A power-law spectrum around a shared direction, as real embeddings have: the sketch can prune these."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((rows, dim)) * np.arange(1, dim + 1, dtype=np.float64) ** -1.5
    values[:, 0] += 1.0
    return normalise_rows(values.astype(np.float32))


def adversarial_rows(seed: int = 1) -> np.ndarray:
    """Embedding-like rows plus what could trip a bounded first pass: exact duplicates that tie across the top-k
    boundary, near-duplicates, rows with one huge value, all-zero rows and rows at the mean (centred norm 0)."""
    rng = np.random.default_rng(seed)
    rows = embedding_like_rows(3_000, 48, seed)
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
def test_the_sketch_keeps_ties_and_adversarial_rows_exact(centred):
    index = SimilarityIndex(adversarial_rows())
    assert not index.projected(8).cannot_prune  # the first pass runs: this is not the exact fallback
    pruned = 0
    for row in (0, 1, 10, 2_900, 2_950, 500):
        direction = index.direction([row], centred=centred)
        exact = index.scores(direction, centred=centred)
        for k in (1, 3, 4, 5, 40, 41, 100, 165):  # boundaries inside and between the groups of 40 ties
            fast = index.fast_scores(direction, exact_top=k, components=8, centred=centred)
            assert_same_top(fast.scores, exact, k)
            assert np.abs(fast.scores - exact).max() <= fast.error_bound
            pruned += len(fast.exact_rows) < len(exact)
    assert pruned > 0  # some queries were answered through the sketch, not by scoring every row
    assert index.scores(index.direction([0], centred=centred), centred=centred)[2_970] == 0.0


def test_a_flat_spectrum_goes_straight_to_the_exact_pass():
    index = SimilarityIndex(isotropic_unit_rows(20_000, 96), already_normalised=True)
    direction = index.direction([7], centred=True)
    fast = index.fast_scores(direction, exact_top=50, components=8, centred=True)
    assert index.projected(8).cannot_prune
    np.testing.assert_array_equal(fast.scores, index.scores(direction, centred=True))
    assert fast.error_bound == 0.0 and len(fast.exact_rows) == 20_000
