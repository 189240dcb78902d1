"""clay_core.cluster: k-means finds planted clusters, deterministically, and marks nodata rows."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.cluster import kmeans
from clay_core.errors import ClayInputError
from clay_core.similarity import SimilarityIndex


def planted(rows_per: int = 300, k: int = 4, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 3.0
    truth = np.repeat(np.arange(k), rows_per * (np.arange(k) + 1) // 2)  # different sizes: 150, 300, ...
    vectors = centres[truth] + 0.3 * rng.standard_normal((len(truth), dim))
    order = rng.permutation(len(truth))
    return vectors[order].astype(np.float32), truth[order]


def test_kmeans_recovers_planted_clusters_numbered_by_size():
    vectors, truth = planted()
    vectors[0] = 0.0
    result = kmeans(SimilarityIndex(vectors), 4, seed=1)
    assert result.labels[0] == -1 and result.distances[0] == -1.0
    labels, truth = result.labels[1:], truth[1:]
    # every planted cluster maps to one found cluster and back (a permutation)
    pairs = {(int(t), int(f)) for t, f in zip(truth, labels, strict=True)}
    assert len(pairs) == 4 and len({f for _, f in pairs}) == 4
    sizes = np.bincount(labels, minlength=4)
    assert (np.diff(sizes) <= 0).all()  # 0 = largest
    # distances are to the (unit-vector) centre of the row's cluster
    unit = vectors[1:] / np.linalg.norm(vectors[1:], axis=1, keepdims=True)
    np.testing.assert_allclose(result.distances[1:], np.linalg.norm(unit - result.centres[labels], axis=1), atol=1e-4)


def test_kmeans_is_deterministic_and_checks_k():
    vectors, _ = planted(seed=3)
    index = SimilarityIndex(vectors)
    first, again = kmeans(index, 5, seed=7), kmeans(index, 5, seed=7)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.centres, again.centres)
    with pytest.raises(ClayInputError, match="at least 1"):
        kmeans(index, 0)
    with pytest.raises(ClayInputError, match="need at least"):
        kmeans(SimilarityIndex(vectors[:3]), 4)
