"""Labels -> classifier: an L2-regularised logistic regression on the embeddings (numpy only: it runs in QGIS's
own Python too), fitted on a few positive and negative chips and applied to every row as a `probability`.

Features are the centred unit vectors of the search, scaled to unit mean length: x_i = (u_i - m) / s with
m the mean unit vector and s the root-mean-square |u_i - m| over every row. Centring removes the direction
all chips share (as in the centred similarity score); scaling makes one regularisation strength suit any
model. Applying the model to every row is then one matrix-vector product on the stored vectors.

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

DEFAULT_L2 = 0.1
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


def fit_logistic(features: np.ndarray, labels: np.ndarray, *, l2: float = DEFAULT_L2,
                 balanced: bool = True) -> tuple[np.ndarray, float]:
    """(weights [D], bias) minimising the weighted mean log-loss + l2/2 |w|^2 (the bias is not penalised)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64).ravel()
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        raise ClayInputError(f"a classifier needs positive and negative examples; got {positives} positive and "
                             f"{len(labels) - positives} negative: label some chips of each kind")
    if l2 <= 0:
        raise ClayInputError(f"the regularisation strength must be > 0, got {l2}")
    weights = np.ones(len(labels))
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
    """A fitted model on the centred, scaled unit vectors of one SimilarityIndex (see the module doc)."""

    weights: np.ndarray  # [D] float64, on x = (u - m) / scale
    bias: float
    mean: np.ndarray  # [D] float32: m of the index it was fitted on
    scale: float
    positives: int
    negatives: int

    def decision(self, index: SimilarityIndex) -> np.ndarray:
        """w.x_i + b for every row of `index`, float64, a block at a time."""
        direction = (self.weights / self.scale).astype(np.float32)
        offset = float(self.mean.astype(np.float64) @ direction.astype(np.float64))
        out = np.empty(len(index), dtype=np.float64)
        for start in range(0, len(index), BLOCK_ROWS):
            stop = start + BLOCK_ROWS
            along = index.vectors[start:stop] @ direction
            along *= index.inverse_norms[start:stop]
            out[start:stop] = along
        out -= offset
        out += self.bias
        out[index.inverse_norms == 0] = -np.inf  # all-nodata rows: never a match
        return out

    def probabilities(self, index: SimilarityIndex) -> np.ndarray:
        """P(positive) for every row, float32 in [0, 1]."""
        return sigmoid(self.decision(index)).astype(np.float32)


def feature_scale(index: SimilarityIndex) -> float:
    """Root-mean-square |u_i - m| over the rows with a direction (1 when they all sit on the mean)."""
    inverse = index.inverse_centred_norms
    valid = inverse > 0
    if not valid.any():
        return 1.0
    return float(np.sqrt(np.mean(1.0 / inverse[valid].astype(np.float64) ** 2)))


def joint_feature_scale(indexes: Sequence[SimilarityIndex]) -> float:
    """`feature_scale` over every row of several indexes (centred on the same mean, see `use_mean`)."""
    weights = np.array([index.valid_rows for index in indexes], dtype=np.float64)
    if weights.sum() == 0:
        return 1.0
    squares = np.array([feature_scale(index) ** 2 for index in indexes])
    return float(np.sqrt(weights @ squares / weights.sum()))


def centred_features(index: SimilarityIndex, rows: Sequence[int], scale: float | None = None) -> np.ndarray:
    """x = (u - m) / scale for some rows (float64)."""
    rows = valid_rows(rows, len(index))
    scale = feature_scale(index) if scale is None else scale
    return (index.unit_rows(rows).astype(np.float64) - index.mean.astype(np.float64)) / scale


def fit_classifier(index: SimilarityIndex, positives: Sequence[int], negatives: Sequence[int], *,
                   l2: float = DEFAULT_L2, positive_vectors: np.ndarray | None = None,
                   negative_vectors: np.ndarray | None = None, scale: float | None = None) -> Classifier:
    """Fit on rows of `index` (and/or example vectors from elsewhere, e.g. another file of the same model).
    A row given as both positive and negative counts as positive. `scale`: the feature scale of a search over
    several indexes (`joint_feature_scale`); default: this index's."""
    negatives = [row for row in negatives if row not in set(positives)]
    scale = feature_scale(index) if scale is None else float(scale)
    parts, labels = [], []
    for rows, extra, label in ((positives, positive_vectors, 1.0), (negatives, negative_vectors, 0.0)):
        if len(rows):
            parts.append(centred_features(index, rows, scale))
            labels.append(np.full(len(rows), label))
        if extra is not None and np.asarray(extra).size:
            extra = np.atleast_2d(np.asarray(extra, dtype=np.float64))
            if extra.shape[1] != index.dim:
                raise ClayInputError(f"the example vectors have {extra.shape[1]} values but the embeddings have "
                                     f"{index.dim}: they come from different models or levels")
            norms = np.linalg.norm(extra, axis=1, keepdims=True)
            unit = np.divide(extra, norms, out=np.zeros_like(extra), where=norms > 0)
            parts.append((unit - index.mean.astype(np.float64)) / scale)
            labels.append(np.full(len(extra), label))
    if not parts:
        raise ClayInputError("no labelled examples: give positive and negative chips")
    label_vector = np.concatenate(labels)
    weights, bias = fit_logistic(np.concatenate(parts), label_vector, l2=l2)
    return Classifier(weights=weights, bias=bias, mean=index.mean.copy(), scale=scale,
                      positives=int(label_vector.sum()), negatives=int(len(label_vector) - label_vector.sum()))


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
    raise ClayInputError(f"label value {value!r} is neither positive (1/true/yes/positive) nor negative "
                         "(0/false/no/negative): name the positive class with --positive-value")
