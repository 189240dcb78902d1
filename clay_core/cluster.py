"""Clusters: k-means on the embeddings (numpy only), a land-cover sketch without any labels.

Rows are clustered as unit vectors (cosine geometry; centring would not change Euclidean k-means). k-means++
seeding on a strided sample, then Lloyd iterations over every row a block at a time, so memory stays at the
stored vectors plus k centres. Deterministic: the same vectors, k and seed give the same clusters, and
clusters are numbered by size (0 = the largest) so the numbering does not depend on the seeding order.
All-zero (nodata) rows get cluster -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clay_core.errors import ClayInputError
from clay_core.similarity import BLOCK_ROWS, SimilarityIndex

_SEED_SAMPLE_ROWS = 20_000


@dataclass
class Clusters:
    labels: np.ndarray  # int32 [N], 0 = largest cluster, -1 = all-zero row
    distances: np.ndarray  # float32 [N]: Euclidean distance of the unit row to its centre (-1 for zero rows)
    centres: np.ndarray  # float32 [k, D], on the unit-vector scale
    iterations: int
    inertia: float  # sum of squared distances


def _nearest(index: SimilarityIndex, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, squared distance) of every row to the nearest centre, a block at a time."""
    rows = len(index)
    labels = np.empty(rows, dtype=np.int32)
    squared = np.empty(rows, dtype=np.float64)
    centre_sq = np.einsum("ij,ij->i", centres, centres, dtype=np.float64)
    for start in range(0, rows, BLOCK_ROWS):
        unit = index.unit_rows(slice(start, start + BLOCK_ROWS))
        # |u - c|^2 = |u|^2 - 2 u.c + |c|^2 ; |u|^2 is 1 (0 for zero rows)
        distance = centre_sq[None, :] - 2.0 * (unit @ centres.T).astype(np.float64)
        best = np.argmin(distance, axis=1)
        labels[start : start + len(unit)] = best
        own = np.einsum("ij,ij->i", unit, unit, dtype=np.float64)
        squared[start : start + len(unit)] = np.maximum(distance[np.arange(len(unit)), best] + own, 0.0)
    return labels, squared


def _kmeans_plus_plus(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++: each new centre is the best (lowest total distance) of a few D^2-weighted draws,
    which avoids most of the bad seedings plain k-means++ makes."""
    tries = 2 + int(np.log(k))
    centres = [sample[int(rng.integers(len(sample)))]]
    closest = np.sum((sample - centres[0]) ** 2, axis=1, dtype=np.float64)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:
            picks = rng.integers(len(sample), size=tries)
        else:
            picks = rng.choice(len(sample), size=tries, p=closest / total)
        options = [
            np.minimum(closest, np.sum((sample - sample[pick]) ** 2, axis=1, dtype=np.float64)) for pick in picks
        ]
        best = int(np.argmin([option.sum() for option in options]))
        centres.append(sample[int(picks[best])])
        closest = options[best]
    return np.array(centres, dtype=np.float32)


def kmeans(
    index: SimilarityIndex,
    k: int,
    *,
    seed: int = 0,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    restarts: int = 3,
) -> Clusters:
    """The best (lowest inertia) of `restarts` seeded runs; restart i uses seed (seed, i)."""
    runs = [
        _kmeans_once(index, k, np.random.default_rng([seed, run]), max_iterations, tolerance)
        for run in range(max(1, restarts))
    ]
    return min(runs, key=lambda result: result.inertia)


def _kmeans_once(
    index: SimilarityIndex, k: int, rng: np.random.Generator, max_iterations: int, tolerance: float
) -> Clusters:
    valid = np.flatnonzero(index.inverse_norms > 0)
    if k < 1:
        raise ClayInputError(f"the number of clusters must be at least 1, got {k}")
    if k > len(valid):
        raise ClayInputError(f"{k} clusters need at least {k} chips with data; the embeddings have {len(valid)}")
    sample_rows = valid[:: max(1, len(valid) // _SEED_SAMPLE_ROWS)]
    centres = _kmeans_plus_plus(index.unit_rows(sample_rows), k, rng)
    previous = None
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - reported below
        labels, squared = _nearest(index, centres)
        labels[index.inverse_norms == 0] = -1
        moved = _update_centres(index, labels, squared, centres)
        if previous is not None and np.array_equal(labels, previous) or moved < tolerance:
            break
        previous = labels
    labels, squared = _nearest(index, centres)
    zero = index.inverse_norms == 0
    labels[zero] = -1
    labels, centres = _number_by_size(labels, centres)
    distances = np.sqrt(squared).astype(np.float32)
    distances[zero] = -1.0
    return Clusters(
        labels=labels, distances=distances, centres=centres, iterations=iterations, inertia=float(squared[~zero].sum())
    )


def _update_centres(index: SimilarityIndex, labels: np.ndarray, squared: np.ndarray, centres: np.ndarray) -> float:
    """Move each centre to the mean of its rows (in place); an empty cluster takes the worst-fitted row.
    Returns the largest centre movement."""
    k, dim = centres.shape
    sums = np.zeros((k, dim), dtype=np.float64)
    counts = np.bincount(labels[labels >= 0], minlength=k)
    for start in range(0, len(index), BLOCK_ROWS):
        block = labels[start : start + BLOCK_ROWS]
        unit = index.unit_rows(slice(start, start + BLOCK_ROWS))
        # one-hot [k, rows] @ unit rows: the per-cluster sums as one BLAS product (np.add.at is ~50x slower)
        one_hot = (block[None, :] == np.arange(k, dtype=block.dtype)[:, None]).astype(np.float32)
        sums += (one_hot @ unit).astype(np.float64)
    new = sums / np.maximum(counts, 1)[:, None]
    for empty in np.flatnonzero(counts == 0):
        worst = int(np.argmax(np.where(labels >= 0, squared, -1.0)))
        new[empty] = index.unit_rows([worst])[0]
        squared[worst] = -1.0
    moved = float(np.max(np.linalg.norm(new - centres, axis=1)))
    centres[:] = new.astype(np.float32)
    return moved


def _number_by_size(labels: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(labels[labels >= 0], minlength=len(centres))
    order = np.lexsort((np.arange(len(centres)), -counts))  # largest first, ties by the old number
    renumber = np.empty(len(centres), dtype=np.int32)
    renumber[order] = np.arange(len(centres), dtype=np.int32)
    out = np.where(labels >= 0, renumber[np.maximum(labels, 0)], -1).astype(np.int32)
    return out, centres[order]
