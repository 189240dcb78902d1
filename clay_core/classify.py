"""Labels -> classifier: an L2-regularised logistic regression on the embeddings (numpy only: it runs in QGIS's
own Python too), fitted on a few positive and negative chips and applied to every row as a `probability`.

Features are the centred unit vectors of the search: x_i = (u_i - m) / |u_i - m|, with u_i the unit vectors and
m their mean over every row searched: the same geometry as the centred similarity score, so the decision value
w.x_i + b is |w| times a centred cosine with the learned direction, plus b. Why unit length after centring: a
linear model on unnormalised vectors ranks outliers (nodata edges, clouds: far from every class) first, which
made its best matches worse than chance in benchmarks/quality.py (precision@10 0.27 from 50 labels per side,
chance 0.25); on unit features |w.x + b| <= |w| + |b| whatever a row's distance from the mean (0.46).
Applying the model to every row is one pass over the stored vectors (two matrix-vector products fused).

Fitting is Newton's method on the (few) labelled rows. With fewer labels than dimensions the solution lies in
the span of the labelled rows (representer theorem), so the problem is solved in that span: an r x r system
with r <= labels, exact and fast (a refit with 50 labels takes milliseconds; scoring 100k x 768 ~ 0.1 s).
The two classes are weighted equally however many labels each has, so 3 positives are not drowned by 30
negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clay_core.errors import ClayInputError
from clay_core.similarity import BLOCK_ROWS, SimilarityIndex, valid_rows

# Chosen with benchmarks/quality.py (OSM land-use, demo-model patches, 4 blocked folds; the same data it is
# evaluated on, so read the table there with that in mind): precision@10 from 20 / 50 labels per side was
# 0.406 / 0.460 at 0.01 against 0.404 / 0.395 at 0.1 and 0.387 / 0.391 at 1; with 5 labels all lie within 0.02.
DEFAULT_L2 = 0.01
_MAX_NEWTON_STEPS = 100
_TOLERANCE = 1e-9


def sigmoid(values: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow warnings for large |x|."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    positive = values >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-values[positive]))
    exp = np.exp(values[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, *, l2: float = DEFAULT_L2, balanced: bool = True
) -> tuple[np.ndarray, float]:
    """(weights [D], bias) minimising the weighted mean log-loss + l2/2 |w|^2 (the bias is not penalised)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64).ravel()
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        raise ClayInputError(
            f"a classifier needs positive and negative examples; got {positives} positive and "
            f"{len(labels) - positives} negative: label some chips of each kind"
        )
    if l2 <= 0:
        raise ClayInputError(f"the regularisation strength must be > 0, got {l2}")
    weights: np.ndarray = np.ones(len(labels))
    if balanced:
        weights = np.where(labels > 0, 0.5 / positives, 0.5 / (len(labels) - positives)) * len(labels)
    weights /= weights.sum()
    # Solve in the span of the labelled rows: w = V beta with V an orthonormal basis of that span.
    if features.shape[0] < features.shape[1]:
        _, singular, basis_t = np.linalg.svd(features, full_matrices=False)
        basis = basis_t[singular > singular[0] * 1e-10].T if singular.size and singular[0] > 0 else basis_t[:0].T
    else:
        basis = np.eye(features.shape[1])
    reduced = features @ basis
    beta, bias = _newton(reduced, labels, weights, l2)
    return basis @ beta, bias


def _newton(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    rows, dim = features.shape
    design = np.hstack([features, np.ones((rows, 1))])
    theta = np.zeros(dim + 1)
    penalty = np.full(dim + 1, l2)
    penalty[-1] = 0.0
    for _ in range(_MAX_NEWTON_STEPS):
        probability = sigmoid(design @ theta)
        gradient = design.T @ (weights * (probability - labels)) + penalty * theta
        curvature = weights * probability * (1.0 - probability)
        hessian = (design * curvature[:, None]).T @ design + np.diag(penalty + 1e-12)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < _TOLERANCE:
            break
    return theta[:-1], float(theta[-1])


@dataclass
class Classifier:
    """A fitted model on centred unit vectors, centred on `mean` (see the module doc)."""

    weights: np.ndarray  # [D] float64, on x = (u - m) / |u - m|
    bias: float
    mean: np.ndarray  # [D] float32: m of the search it was fitted on
    positives: int
    negatives: int

    def decision(self, index: SimilarityIndex) -> np.ndarray:
        """w.x_i + b for every row of `index` (float64), a block at a time: one pass computes v.w and v.m."""
        mean = self.mean.astype(np.float64)
        both = np.stack([self.weights, mean], axis=1).astype(np.float32)  # [D, 2]
        mean_sq = float(mean @ mean)
        offset = float(mean @ self.weights)
        out = np.empty(len(index), dtype=np.float64)
        for start in range(0, len(index), BLOCK_ROWS):
            stop = start + BLOCK_ROWS
            products = (index.vectors[start:stop] @ both).astype(np.float64)
            products *= index.inverse_norms[start:stop, None]
            along_w, along_m = products[:, 0], products[:, 1]
            centred_sq = np.maximum(1.0 - 2.0 * along_m + mean_sq, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[start:stop] = (along_w - offset) / np.sqrt(centred_sq)
        bad = (index.inverse_norms == 0) | ~np.isfinite(out)
        out += self.bias
        out[bad] = -np.inf  # all-nodata rows and rows at the mean: never a match
        return out

    def probabilities(self, index: SimilarityIndex) -> np.ndarray:
        """P(positive) for every row, float32 in [0, 1]."""
        return sigmoid(self.decision(index)).astype(np.float32)


def centred_unit(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(u - m) / |u - m| for some vectors (float64; zero rows stay zero)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    centred: np.ndarray = unit - np.asarray(mean, dtype=np.float64)
    lengths = np.linalg.norm(centred, axis=1, keepdims=True)
    centred = np.divide(centred, lengths, out=np.zeros_like(centred), where=lengths > 1e-6)
    centred[norms[:, 0] == 0] = 0.0
    return centred


def fit_classifier(
    index: SimilarityIndex,
    positives: Sequence[int],
    negatives: Sequence[int],
    *,
    l2: float = DEFAULT_L2,
    positive_vectors: np.ndarray | None = None,
    negative_vectors: np.ndarray | None = None,
) -> Classifier:
    """Fit on rows of `index` and/or example vectors from elsewhere (e.g. another file of the same model),
    centred on the index's current search mean (`SimilarityIndex.use_mean`). A row given as both positive and
    negative counts as positive."""
    positives = list(valid_rows(positives, len(index)))
    positive_set = set(positives)
    negatives = [row for row in valid_rows(negatives, len(index)) if row not in positive_set]
    parts, labels = [], []
    for rows, extra, label in ((positives, positive_vectors, 1.0), (negatives, negative_vectors, 0.0)):
        vectors = [index.vectors[rows]] if len(rows) else []
        if extra is not None and np.asarray(extra).size:
            extra = np.atleast_2d(np.asarray(extra, dtype=np.float32))
            if extra.shape[1] != index.dim:
                raise ClayInputError(
                    f"the example vectors have {extra.shape[1]} values but the embeddings have "
                    f"{index.dim}: they come from different models or levels"
                )
            vectors.append(extra)
        if vectors:
            stacked = np.concatenate(vectors)
            parts.append(centred_unit(stacked, index.mean))
            labels.append(np.full(len(stacked), label))
    if not parts:
        raise ClayInputError("no labelled examples: give positive and negative chips")
    label_vector = np.concatenate(labels)
    weights, bias = fit_logistic(np.concatenate(parts), label_vector, l2=l2)
    return Classifier(
        weights=weights,
        bias=bias,
        mean=index.mean.copy(),
        positives=int(label_vector.sum()),
        negatives=int(len(label_vector) - label_vector.sum()),
    )


def parse_label(value: object, positive_values: Sequence[str] = ()) -> bool | None:
    """A label field's value -> True (positive), False (negative) or None (unlabelled: skipped).
    With `positive_values`, exactly those (as text) are positive and every other value negative."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().lower()
    if positive_values:
        return text in {str(v).strip().lower() for v in positive_values}
    if text in {"1", "true", "yes", "y", "positive", "pos", "+", "1.0"}:
        return True
    if text in {"0", "false", "no", "n", "negative", "neg", "-", "0.0", "-1", "-1.0"}:
        return False
    raise ClayInputError(
        f"label value {value!r} is neither positive (1/true/yes/positive) nor negative "
        "(0/false/no/negative): name the positive class with --positive-value"
    )
