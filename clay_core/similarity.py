"""Find similar places: centred or plain cosine scores, ranks, top-k and positive/negative queries (numpy only).

The QGIS plugin runs this in-process (no torch), so it needs nothing but numpy. Geometry helpers at the
end resolve a query point to the chip that contains it by parsing the GeoParquet WKB polygons directly.

Scores. With unit vectors u_i and m the mean of the u_i over every row searched (all-zero rows, e.g. fully
nodata chips, are left out of the mean and score 0):
  centred (the default)  score_i = cos(u_i - m, d),  d = mean(pos u) - m, or mean(pos u) - mean(neg u)
  raw                    score_i = cos(u_i, d),      d = mean(pos u),     or mean(pos u) - mean(neg u)
Why centred: embeddings of one model share a large common direction, so raw cosines of all chips crowd near
1 (0.888-1.000 on the demo) and barely separate anything; removing the mean spreads them over [-1, 1].
Both cost one matrix-vector product per query: |u_i - m| = sqrt(1 - 2 u_i.m + |m|^2) is computed once per row.

Conventions: `vectors` is [N, D] float32 (one row per chip or patch, flattened) and is kept as given (no unit
copy: the output files get the input's vectors back bit for bit); scores are float32 in [-1, 1]; rank 1 is the
most similar row.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from clay_core import wkb
from clay_core.errors import ClayInputError

# The patch layout lives in clay_core.patches (one rule for the writer and the QGIS view); these names stay
# importable from here for existing callers.
from clay_core.patches import (  # noqa: F401
    explode_patch_rings,
    explode_patch_vectors,
    patch_grid_shape,
    patch_rings_crs84,
)

# Rows are processed in blocks so a 1M x 768 matrix never needs a second full-size copy; a block's temporary
# (16k x 768 float32 = 48 MB) stays small next to the vectors, which keeps a search within 1.5x of them.
BLOCK_ROWS = 16_384
_NORMALISE_BLOCK_ROWS = BLOCK_ROWS
# A row this close to the mean has no direction of its own after centring: it scores 0 (not NaN).
_MIN_CENTRED_NORM = 1e-6


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy of each row. All-zero rows (e.g. fully nodata chips) stay zero and so score 0."""
    vectors = _matrix(vectors)
    normalised = np.empty(vectors.shape, dtype=np.float32)
    inverse = inverse_norms(vectors)
    for start in range(0, len(vectors), BLOCK_ROWS):
        block = np.asarray(vectors[start : start + BLOCK_ROWS], dtype=np.float32)
        np.multiply(block, inverse[start : start + len(block), None], out=normalised[start : start + len(block)])
    return normalised


def _matrix(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ClayInputError(f"embedding vectors must be a 2-D array [rows, values], got shape {vectors.shape}")
    return vectors


def inverse_norms(vectors: np.ndarray) -> np.ndarray:
    """1 / |row| per row (float32), 0 for all-zero or non-finite rows, computed block by block in float64."""
    vectors = _matrix(vectors)
    inverse = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), BLOCK_ROWS):
        block = np.asarray(vectors[start : start + BLOCK_ROWS], dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        with np.errstate(divide="ignore"):
            part = 1.0 / norms
        part[~np.isfinite(part) | (norms == 0)] = 0.0
        inverse[start : start + len(block)] = part
    return inverse


def _unit(query: np.ndarray) -> np.ndarray:
    query = np.asarray(query, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0:
        raise ClayInputError(
            "the query vector is zero (positives equal negatives, the query is the average of "
            "all chips, or an all-nodata chip): choose other example chips"
        )
    return (query / norm).astype(np.float32)


def check_dimension(expected: int, got: int, what: str = "the query") -> None:
    if expected != got:
        raise ClayInputError(
            f"{what} has {got} values per vector but the embeddings have {expected}: they come from different "
            "models or levels; embed both with the same model and level"
        )


def row_dots(matrix: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """matrix @ direction (float32) where each row's value depends on that row alone: numpy's einsum loop,
    not BLAS, whose sgemv may round a row differently by its position or the number of rows (seen: 1 ulp apart
    between a full pass and a few gathered rows). The two-stage path re-scores its candidates with this, so
    they are bit for bit the exact scores and ties order the same. einsum is one thread, so large matrices go in
    row blocks over a thread pool (einsum releases the GIL; a row's value does not depend on its block): 400k x 768
    on 2 cores, 115 ms in one thread, 61 ms in blocks, 82-107 ms for numpy's matvec, bit for bit the same."""
    rows = matrix.shape[0]
    if rows < 2 * ROW_BLOCK or _threads() == 1:
        return np.einsum("ij,j->i", matrix, direction)
    out = np.empty(rows, dtype=np.result_type(matrix.dtype, direction.dtype))

    def block(start: int) -> None:
        np.einsum("ij,j->i", matrix[start : start + ROW_BLOCK], direction, out=out[start : start + ROW_BLOCK])

    list(_pool().map(block, range(0, rows, ROW_BLOCK)))
    return out


ROW_BLOCK = 32768  # rows per task: ~100 MB of 768-d float32, many tasks per thread for an even finish
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()  # the sketch is built in a thread of its own while the caller may score


def _threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_threads(), thread_name_prefix="clay-scores")
        return _POOL


def cosine_scores(vectors: np.ndarray, query: np.ndarray, *, normalised: bool = False) -> np.ndarray:
    """Plain cosine similarity of every row of `vectors` with `query`, float32 in [-1, 1]."""
    matrix = _matrix(vectors)
    check_dimension(matrix.shape[1], np.asarray(query).size)
    scores = matrix @ _unit(query)
    if not normalised:
        scores *= inverse_norms(matrix)
    # Rounding can push a self-match a hair above 1; the field is documented as [-1, 1].
    return np.clip(scores, -1.0, 1.0, out=scores)


def _mean_unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return (vectors.astype(np.float64) * inverse_norms(vectors)[:, None]).mean(axis=0)


def search_direction(
    positive_vectors: np.ndarray, negative_vectors: np.ndarray | None = None, mean: np.ndarray | None = None
) -> np.ndarray:
    """The unit direction a query scores along (see the module doc): mean(pos u) - mean(neg u) with negatives;
    otherwise mean(pos u) - `mean` for centred scores, or mean(pos u) for raw ones (`mean` None). Normalising
    each example first stops one long vector from dominating the mean."""
    positives = np.atleast_2d(np.asarray(positive_vectors, dtype=np.float32))
    if positives.size == 0:
        raise ClayInputError("no positive example: give at least one chip id, point or selected feature")
    direction = _mean_unit(positives)
    if negative_vectors is not None and np.asarray(negative_vectors).size:
        negatives = np.atleast_2d(np.asarray(negative_vectors, dtype=np.float32))
        check_dimension(positives.shape[1], negatives.shape[1], "the negative examples")
        direction = direction - _mean_unit(negatives)
    elif mean is not None:
        check_dimension(positives.shape[1], np.asarray(mean).size, "the positive examples")
        direction = direction - np.asarray(mean, dtype=np.float64)
    return _unit(direction)


def combine_query(positive_vectors: np.ndarray, negative_vectors: np.ndarray | None = None) -> np.ndarray:
    """The raw (uncentred) query direction: mean(unit positives) - mean(unit negatives)."""
    return search_direction(positive_vectors, negative_vectors, None)


def query_vector(vectors: np.ndarray, positives: Sequence[int], negatives: Sequence[int] = ()) -> np.ndarray:
    """The raw query direction for rows `positives` (and optional `negatives`) of `vectors`, unit length."""
    positive_rows, negative_rows = valid_rows(positives, len(vectors)), valid_rows(negatives, len(vectors))
    negative_vectors = np.asarray(vectors)[negative_rows] if len(negative_rows) else None
    return combine_query(np.asarray(vectors)[positive_rows], negative_vectors)


def valid_rows(rows: Sequence[int], count: int) -> np.ndarray:
    array = np.asarray(list(rows), dtype=np.int64)
    bad = array[(array < 0) | (array >= count)]
    if bad.size:
        raise ClayInputError(f"row {int(bad[0])} is not in the embeddings (they have {count} rows)")
    return array


_valid_rows = valid_rows  # the old private name


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first (ties: lower index first). k <= 0 means all."""
    scores = np.asarray(scores)
    if k <= 0 or k >= len(scores):
        return np.argsort(-scores, kind="stable")
    # argpartition picks an arbitrary subset of the rows tied at the k-th score: take those in row order
    kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
    above = np.flatnonzero(scores > kth)
    candidates = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every row (1 = most similar), int32; ties broken by row order."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    result = np.empty(len(order), dtype=np.int32)
    result[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return result


def select_matches(scores: np.ndarray, k: int = 0, threshold: float | None = None) -> np.ndarray:
    """Rows to keep, best first: the top k (k <= 0: all) whose score is at least `threshold`."""
    chosen = top_k(scores, k)
    if threshold is not None:
        chosen = chosen[np.asarray(scores)[chosen] >= threshold]
    return chosen


@dataclass
class Scored:
    """The outcome of one query: a score and a rank for every row."""

    scores: np.ndarray  # float32 [N] in [-1, 1]
    ranks: np.ndarray  # int32 [N], 1 = best


class SimilarityIndex:
    """The vectors of one search (as given, no copy when float32) plus what makes a query one matrix-vector
    product in either mode: 1/|v_i|, the mean unit vector m and 1/|u_i - m| (8 bytes per row in all).

    `already_normalised=True` skips computing the norms (they are taken as 1) for callers that hold unit rows."""

    def __init__(self, vectors: np.ndarray, *, already_normalised: bool = False) -> None:
        self.vectors = np.asarray(_matrix(vectors), dtype=np.float32)
        rows = len(self.vectors)
        self.inverse_norms = np.ones(rows, dtype=np.float32) if already_normalised else inverse_norms(self.vectors)
        self.own_mean = self._mean_of_unit_rows()
        self.mean = self.own_mean
        self.inverse_centred_norms = self._inverse_centred_norms()
        self._projected: ProjectedIndex | None = None
        self._building: threading.Thread | None = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.vectors)

    def unit_rows(self, rows: Sequence[int] | slice | np.ndarray) -> np.ndarray:
        """Unit-length copies of some rows (float32)."""
        return self.vectors[rows] * self.inverse_norms[rows][:, None]

    def _mean_of_unit_rows(self) -> np.ndarray:
        total = np.zeros(self.dim, dtype=np.float64)
        for start in range(0, len(self), BLOCK_ROWS):
            stop = start + BLOCK_ROWS
            # the weighted sum of a block's rows is one float32 vector-matrix product (a float64 one would first
            # copy the block to float64); the blocks are summed in float64
            total += self.inverse_norms[start:stop] @ self.vectors[start:stop]
        valid = int(np.count_nonzero(self.inverse_norms))
        return (total / max(valid, 1)).astype(np.float32)

    @property
    def valid_rows(self) -> int:
        """Rows with a direction (not all zero): the weight of this index in a joint mean."""
        return int(np.count_nonzero(self.inverse_norms))

    def use_mean(self, mean: np.ndarray | None) -> None:
        """Centre on `mean` (the mean unit vector of a search over several indexes, see `joint_mean`), or on
        this index's own mean (None). One matrix-vector product when the mean changes, nothing otherwise."""
        mean = self.own_mean if mean is None else np.asarray(mean, dtype=np.float32).ravel()
        check_dimension(self.dim, mean.size, "the search mean")
        if mean is self.mean or np.array_equal(mean, self.mean):
            return
        self.mean = mean
        self.inverse_centred_norms = self._inverse_centred_norms()

    def _inverse_centred_norms(self) -> np.ndarray:
        """1/|u_i - m| from |u_i - m|^2 = 1 - 2 u_i.m + |m|^2 (0 for zero rows and rows at the mean)."""
        mean_sq = float(self.mean.astype(np.float64) @ self.mean)
        along_mean = self.vectors @ self.mean
        along_mean *= self.inverse_norms
        squared = 1.0 - 2.0 * along_mean.astype(np.float64) + mean_sq
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1.0 / np.sqrt(np.maximum(squared, 0.0))
        inverse[(squared < _MIN_CENTRED_NORM**2) | (self.inverse_norms == 0)] = 0.0
        return inverse.astype(np.float32)

    # -- queries -----------------------------------------------------------------------------------
    def direction(self, positives: Sequence[int], negatives: Sequence[int] = (), *, centred: bool = True) -> np.ndarray:
        """The unit query direction for rows `positives` / `negatives` of this index."""
        positive_rows, negative_rows = valid_rows(positives, len(self)), valid_rows(negatives, len(self))
        negative_vectors = self.vectors[negative_rows] if len(negative_rows) else None
        return self.direction_of(self.vectors[positive_rows], negative_vectors, centred=centred)

    def direction_of(
        self, positive_vectors: np.ndarray, negative_vectors: np.ndarray | None = None, *, centred: bool = True
    ) -> np.ndarray:
        """The same for example vectors from anywhere (e.g. another file of the same model)."""
        positive_vectors = np.atleast_2d(np.asarray(positive_vectors, dtype=np.float32))
        if positive_vectors.size:
            check_dimension(self.dim, positive_vectors.shape[1], "the positive examples")
        return search_direction(positive_vectors, negative_vectors, self.mean if centred else None)

    def query(self, positives: Sequence[int], negatives: Sequence[int] = ()) -> np.ndarray:
        """The raw query direction (kept for callers of the uncentred API)."""
        return self.direction(positives, negatives, centred=False)

    def scores(self, direction: np.ndarray, *, centred: bool = False) -> np.ndarray:
        """Exact float32 scores of every row along a unit `direction` (see the module doc for the two modes)."""
        check_dimension(self.dim, np.asarray(direction).size)
        scores = _exact_rows(self, slice(None), _unit(direction), centred)
        return np.clip(scores, -1.0, 1.0, out=scores)

    def score(self, direction: np.ndarray, *, centred: bool = False) -> Scored:
        scores = self.scores(direction, centred=centred)
        return Scored(scores=scores, ranks=ranks(scores))

    def search(self, positives: Sequence[int], negatives: Sequence[int] = (), *, centred: bool = True) -> Scored:
        """Scores and ranks of every row for examples that are rows of this index: the one call behind
        `clay similar`, clay:similarity and the map tool."""
        return self.score(self.direction(positives, negatives, centred=centred), centred=centred)

    # -- the two-stage path for large searches -----------------------------------------------------
    def projected(self, components: int = 64) -> ProjectedIndex:
        """The low-dimensional sketch for fast scoring with an exact top, built on first use and then kept."""
        cached = self._projected
        if cached is None or cached.components != min(components, self.dim):
            cached = ProjectedIndex.build(self, components)
            self._projected = cached
        return cached

    def projection_ready(self, components: int = 64) -> bool:
        cached = self._projected
        return cached is not None and cached.components == min(components, self.dim)

    def build_projection_in_background(self, components: int = 64) -> threading.Thread | None:
        """Start building the sketch in a daemon thread (numpy's matrix products release the GIL, so the
        caller stays responsive); None when it is built or already being built."""
        if self.projection_ready(components) or (self._building is not None and self._building.is_alive()):
            return None
        self._building = threading.Thread(
            target=self.projected, args=(components,), daemon=True, name="clay-similarity-sketch"
        )
        self._building.start()
        return self._building

    def fast_scores(
        self, direction: np.ndarray, exact_top: int = 100, components: int = 64, *, centred: bool = False
    ) -> FastScores:
        """Scores for every row whose best `exact_top` rows are exactly `scores()`'s (see ProjectedIndex)."""
        return self.projected(components).scores(self, direction, exact_top, centred=centred)


def joint_mean(indexes: Sequence[SimilarityIndex]) -> np.ndarray:
    """The mean unit vector over every row of several indexes (one search over several files or layers)."""
    weights = np.array([index.valid_rows for index in indexes], dtype=np.float64)
    if not len(indexes) or weights.sum() == 0:
        return indexes[0].own_mean if indexes else np.zeros(0, dtype=np.float32)
    for index in indexes[1:]:
        check_dimension(indexes[0].dim, index.dim, "one of the embeddings")
    means = np.stack([index.own_mean.astype(np.float64) for index in indexes])
    return (weights @ means / weights.sum()).astype(np.float32)


def centre_jointly(indexes: Sequence[SimilarityIndex]) -> None:
    """Centre indexes searched together on their joint mean (`joint_mean`), so their scores are those of one
    index over all their rows; a lone index goes back to its own mean (a previous joint search may have moved
    it)."""
    mean = joint_mean(indexes) if len(indexes) > 1 else None
    for index in indexes:
        index.use_mean(mean)


# ----------------------------------------------------------------------------------------------
# Two-stage scoring for large searches: a PCA sketch for every row, exact scores for the best ones
# ----------------------------------------------------------------------------------------------

# Exact fp32 scoring of 1M x 768 reads 3 GB: memory-bandwidth bound at ~0.2 s or more on a laptop-class CPU.
# The sketch reads N x 64 floats (12x less) and bounds its own error, so the top rows can be made exact.
_SKETCH_SAMPLE_ROWS = 8_192  # plenty for the top 64 directions; the Gram matrix stays cheap
_SKETCH_BLOCK_ROWS = 16_384  # the build's temporary unit rows: 48 MB at 768-d
# float32 rounding of the sketch's dot products (64 terms of |x| <= 1) and of the exact scores stays far below
# this; it keeps the candidate test conservative so the exact top rows are never pruned by rounding.
_ROUNDING_MARGIN = 1e-4
# Past this share of the rows re-scored, a first pass saves nothing over exact scoring.
_MAX_CANDIDATE_SHARE = 4
# A probe query at build time leaving more than 1/8 of the rows as candidates: the sketch cannot prune this data.
_CANNOT_PRUNE_SHARE = 8


@dataclass
class FastScores:
    """Scores from the sketch: `scores[exact_rows]` are exact, every other score is within `error_bound` of its
    exact value (usually far closer: the bound is Cauchy-Schwarz on the residuals)."""

    scores: np.ndarray  # float32 [N] in [-1, 1]
    exact_rows: np.ndarray  # int64 rows re-scored exactly: a superset of the true top `exact_top`
    error_bound: float  # max |approximate - exact| over the rows not re-scored
    exact_top: int


def _rounding_margin(dim: int) -> float:
    """float32 rounding of a D-term dot product of a unit row with a unit vector is at most ~D 2^-24 (any
    summation order); the first pass and the exact score each round, plus a few elementwise steps."""
    return max(_ROUNDING_MARGIN, (4 * dim + 16) * 2.0**-24)


@dataclass
class ProjectedIndex:
    """Unit rows u split as u = B B^T u + r with B the top principal directions (uncentred PCA of a sample of
    rows): u.d = (B^T u).(B^T d) + r_u.r_d, and |r_u.r_d| <= |r_u| |r_d|. So `projected @ (B^T d)` gives every
    row's u.d within a known bound, and so its score (raw: u.d; centred: (u.d - m.d) / |u - m|, monotone in u.d
    per row); rows whose upper bound reaches the k-th best lower bound are re-scored exactly, which makes the
    top k exact whatever the data. Real embeddings put most of their energy in a few directions (small
    residuals: few candidates); isotropic random vectors do not: a probe query at build time finds that out, and
    such data is scored exactly from then on (as is any query leaving over a quarter of the rows as candidates).
    An int8 first pass for flat spectra was measured and dropped: 0.92-1.17x numpy's matvec on the quiet 2-core
    box, slower than the exact pass (benchmarks/similarity.py's docstring)."""

    basis: np.ndarray  # float32 [D, r], orthonormal columns
    projected: np.ndarray  # float32 [N, r]: B^T u_i
    residual_norms: np.ndarray  # float32 [N]: |u_i - B B^T u_i|
    cannot_prune: bool = False  # a probe query at build time left too many candidates (a flat spectrum)

    @property
    def components(self) -> int:
        return int(self.basis.shape[1])

    @classmethod
    def build(cls, index: SimilarityIndex, components: int = 64) -> ProjectedIndex:
        """The sketch, and whether a probe query shows it can prune this data."""
        rows, dim = index.vectors.shape
        components = max(1, min(components, dim))
        # A strided sample: deterministic, and spread over the whole file (files are written in grid order).
        # float32 Gram matrix: the basis need not be exact (the error bound holds for any orthonormal basis).
        step = max(1, rows // _SKETCH_SAMPLE_ROWS)
        sample = index.unit_rows(np.arange(0, rows, step)[:_SKETCH_SAMPLE_ROWS])
        _, eigenvectors = np.linalg.eigh((sample.T @ sample).astype(np.float64))  # ascending eigenvalues
        basis = np.ascontiguousarray(eigenvectors[:, ::-1][:, :components], dtype=np.float32)
        projected = np.empty((rows, components), dtype=np.float32)
        residual_norms = np.empty(rows, dtype=np.float32)
        for start in range(0, rows, _SKETCH_BLOCK_ROWS):
            block = index.unit_rows(slice(start, start + _SKETCH_BLOCK_ROWS))
            part = np.dot(block, basis, out=projected[start : start + len(block)])
            # float64: residuals of well-sketched rows are tiny differences of numbers near 1
            energy = np.einsum("ij,ij->i", block, block, dtype=np.float64) - np.einsum(
                "ij,ij->i", part, part, dtype=np.float64
            )
            residual_norms[start : start + len(block)] = np.sqrt(np.maximum(energy, 0.0))
        sketch = cls(basis=basis, projected=projected, residual_norms=residual_norms)
        sketch.cannot_prune = sketch.prunes_too_little(index, sample)
        return sketch

    def prunes_too_little(self, index: SimilarityIndex, sample: np.ndarray) -> bool:
        """Whether a probe query (the centred direction of a sampled row) leaves more than 1/8 of the rows as
        candidates of its top 100."""
        rows = len(self.residual_norms)
        try:
            probe = index.direction_of(sample[len(sample) // 2], centred=True)
        except ClayInputError:  # a zero row or one at the mean: no direction to probe with
            return False
        approximate, bound = _centred_bounds(index, probe, *self.dot(probe))
        return len(_candidates(approximate, bound, min(100, rows))) > rows // _CANNOT_PRUNE_SHARE

    def dot(self, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u_i.d for a unit `direction` from the sketch, and a bound on each row's error."""
        direction_part64 = direction.astype(np.float64) @ self.basis
        direction_residual = float(np.sqrt(max(0.0, 1.0 - float(direction_part64 @ direction_part64))))
        approximate = self.projected @ direction_part64.astype(np.float32)
        bound = self.residual_norms * np.float32(direction_residual)
        bound += np.float32(_rounding_margin(self.basis.shape[0]))
        return approximate, bound

    def scores(
        self, index: SimilarityIndex, direction: np.ndarray, exact_top: int = 100, *, centred: bool = False
    ) -> FastScores:
        check_dimension(self.basis.shape[0], np.asarray(direction).size)
        direction = _unit(direction)
        rows = len(self.residual_norms)
        exact_top = max(1, min(int(exact_top), rows))
        if self.cannot_prune:
            # the probe showed the sketch cannot prune this data: its pass would only add to the exact one
            return _all_exact(index, direction, exact_top, centred)
        approximate, bound = self.dot(direction)
        if centred:
            approximate, bound = _centred_bounds(index, direction, approximate, bound)
        candidates = _candidates(approximate, bound, exact_top)
        if len(candidates) > rows // _MAX_CANDIDATE_SHARE:
            return _all_exact(index, direction, exact_top, centred)  # prunes too little here: exact is cheaper
        approximate[candidates] = _exact_rows(index, candidates, direction, centred)
        rest_bound = float(np.max(np.delete(bound, candidates))) if len(candidates) < rows else 0.0
        return FastScores(
            scores=np.clip(approximate, -1.0, 1.0, out=approximate),
            exact_rows=candidates,
            error_bound=rest_bound,
            exact_top=exact_top,
        )


def _all_exact(index: SimilarityIndex, direction: np.ndarray, exact_top: int, centred: bool) -> FastScores:
    """FastScores without a first pass: every row scored exactly."""
    exact = index.scores(direction, centred=centred)
    return FastScores(scores=exact, exact_rows=np.arange(len(exact)), error_bound=0.0, exact_top=exact_top)


def _centred_bounds(
    index: SimilarityIndex, direction: np.ndarray, approximate: np.ndarray, bound: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The same affine map per row as SimilarityIndex.scores (in place): bounds scale with 1/|u - m|."""
    approximate -= np.float32(float(index.mean.astype(np.float64) @ direction))
    approximate *= index.inverse_centred_norms
    bound *= index.inverse_centred_norms
    return approximate, bound


def _candidates(approximate: np.ndarray, bound: np.ndarray, exact_top: int) -> np.ndarray:
    """Rows whose upper bound reaches the k-th best lower bound: a superset of the exact top k, ties included
    (k rows score at least that lower bound, so the k-th exact score does too)."""
    rows = len(approximate)
    lower = approximate - bound
    kth_lower = lower[np.argpartition(lower, rows - exact_top)[rows - exact_top]]
    upper = np.add(approximate, bound, out=lower)
    return np.flatnonzero(upper >= kth_lower)


def _exact_rows(index: SimilarityIndex, rows: np.ndarray | slice, direction: np.ndarray, centred: bool) -> np.ndarray:
    """Exact float32 scores of some rows (unclipped): SimilarityIndex.scores is this over every row, so the
    two-stage path's re-scored candidates are its scores bit for bit."""
    scores = row_dots(index.vectors[rows], direction)
    scores *= index.inverse_norms[rows]
    if centred:
        scores -= np.float32(float(index.mean.astype(np.float64) @ direction))
        scores *= index.inverse_centred_norms[rows]
    return scores


# ----------------------------------------------------------------------------------------------
# Geometry: which chip contains a point (WKB polygons in CRS84, parsed without shapely/GDAL)
# ----------------------------------------------------------------------------------------------


def exterior_rings(geometry_wkb: Sequence[bytes]) -> list[np.ndarray]:
    """Exterior rings [K, 2] of WKB polygons (clay_core.wkb: 2-D or Z/M, Polygon or MultiPolygon)."""
    return [wkb.exterior_ring(value) for value in geometry_wkb]


def ring_bounds(rings: Sequence[np.ndarray]) -> np.ndarray:
    """[N, 4] (xmin, ymin, xmax, ymax) of every ring, computed without a Python loop over the rings;
    rings with fewer than 4 points (empty geometry) get NaN bounds and so never match a point. Callers
    that query many points on the same rings (the QGIS map tool) compute this once and pass it on."""
    lengths = np.fromiter((len(ring) for ring in rings), dtype=np.int64, count=len(rings))
    bounds = np.full((len(rings), 4), np.nan)
    usable = np.flatnonzero(lengths >= 4)
    if not len(usable):
        return bounds
    points = (
        np.concatenate([np.asarray(rings[i], dtype=np.float64)[:, :2] for i in usable])
        if len(usable) < len(rings)
        else np.concatenate(rings).astype(np.float64, copy=False)[:, :2]
    )
    starts = np.concatenate([[0], np.cumsum(lengths[usable])[:-1]])
    bounds[usable, :2] = np.minimum.reduceat(points, starts, axis=0)
    bounds[usable, 2:] = np.maximum.reduceat(points, starts, axis=0)
    return bounds


def _contains(ring: np.ndarray, x: float, y: float) -> bool:
    """Even-odd ray casting; a point on the shared edge of two chips counts for at least one of them."""
    x0, y0 = ring[:-1, 0], ring[:-1, 1]
    x1, y1 = ring[1:, 0], ring[1:, 1]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at_y = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.count_nonzero(crosses & (x < x_at_y)) % 2)


def rows_at_point(
    rings: Sequence[np.ndarray], lon: float, lat: float, *, bounds: np.ndarray | None = None
) -> list[int]:
    """Rows whose polygon contains (lon, lat), nearest centre first (overlapping chips with stride < size).

    A vectorised bounding-box test picks the candidates; only those get the exact point-in-polygon test.
    `bounds`: `ring_bounds(rings)`, when the caller keeps it between queries."""
    if bounds is None:
        bounds = ring_bounds(rings)
    with np.errstate(invalid="ignore"):  # NaN bounds (empty rings) compare False
        inside_box = (bounds[:, 0] <= lon) & (lon <= bounds[:, 2]) & (bounds[:, 1] <= lat) & (lat <= bounds[:, 3])
    hits = []
    for row in np.flatnonzero(inside_box):
        ring = np.asarray(rings[row], dtype=np.float64)[:, :2]
        if _contains(ring, lon, lat):
            centre = ring[:-1].mean(axis=0)
            hits.append((float(np.hypot(centre[0] - lon, centre[1] - lat)), int(row)))
    return [row for _, row in sorted(hits)]


def row_at_point(rings: Sequence[np.ndarray], lon: float, lat: float, *, bounds: np.ndarray | None = None) -> int:
    rows = rows_at_point(rings, lon, lat, bounds=bounds)
    if not rows:
        raise ClayInputError(
            f"the point {lon:.6f},{lat:.6f} (lon,lat) is not inside any chip of the embeddings "
            "file: click or give a point on a chip"
        )
    return rows[0]
