"""clay_core.classify: the logistic regression against a float64 reference, and the classifier on an index."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.classify import Classifier, fit_classifier, fit_logistic, parse_label, sigmoid
from clay_core.errors import ClayInputError
from clay_core.similarity import SimilarityIndex


def test_fit_logistic_reaches_the_optimum_of_its_objective():
    """At the optimum the gradient of weighted mean log-loss + l2/2 |w|^2 vanishes (checked in float64)."""
    rng = np.random.default_rng(0)
    for rows, dim in ((12, 40), (300, 8)):  # fewer labels than dimensions (span solve) and more (plain Newton)
        x = rng.standard_normal((rows, dim))
        y = (x[:, 0] + 0.5 * rng.standard_normal(rows) > 0).astype(float)
        w, b = fit_logistic(x, y, l2=0.05, balanced=False)
        p = sigmoid(x @ w + b)
        gradient_w = x.T @ (p - y) / rows + 0.05 * w
        gradient_b = np.mean(p - y)
        assert np.abs(gradient_w).max() < 1e-7 and abs(gradient_b) < 1e-7


def test_balanced_weights_do_not_let_many_negatives_drown_few_positives():
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(1.0, 1.0, (3, 5)), rng.normal(-1.0, 1.0, (60, 5))])
    y = np.r_[np.ones(3), np.zeros(60)]
    w, b = fit_logistic(x, y, l2=0.1)
    assert sigmoid(x[:3] @ w + b).mean() > 0.5 > sigmoid(x[3:] @ w + b).mean()


def test_one_class_only_is_a_readable_error():
    with pytest.raises(ClayInputError, match="positive and negative"):
        fit_logistic(np.ones((3, 2)), np.ones(3))


def two_kinds(rows: int = 2_000, dim: int = 64, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings like a model's: a big shared offset plus a small class signal."""
    rng = np.random.default_rng(seed)
    kind = rng.random(rows) < 0.2
    signal = np.zeros(dim)
    signal[:4] = 1.0
    vectors = 10.0 + rng.standard_normal((rows, dim)) + np.outer(kind, signal) * 2.5
    vectors[7] = 0.0  # an all-nodata chip
    return vectors.astype(np.float32), kind


def test_classifier_separates_the_kinds_from_few_labels():
    vectors, kind = two_kinds()
    index = SimilarityIndex(vectors)
    positives = np.flatnonzero(kind)[:10].tolist()
    negatives = np.flatnonzero(~kind)[:10].tolist()
    classifier = fit_classifier(index, positives, negatives)
    probability = classifier.probabilities(index)
    assert probability.dtype == np.float32 and probability.min() >= 0.0 and probability.max() <= 1.0
    assert probability[7] == 0.0  # nodata rows never match
    others = np.setdiff1d(np.arange(len(vectors)), positives + negatives + [7])
    predicted = probability[others] >= 0.5
    assert (predicted == kind[others]).mean() > 0.85
    # the same model applied by hand: sigmoid(w.(u - m)/|u - m| + b)
    unit = vectors[others[:5]] / np.linalg.norm(vectors[others[:5]], axis=1, keepdims=True)
    centred = unit - classifier.mean
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    by_hand = sigmoid(centred @ classifier.weights + classifier.bias)
    np.testing.assert_allclose(probability[others[:5]], by_hand, atol=1e-5)
    assert isinstance(classifier, Classifier) and classifier.positives == 10 and classifier.negatives == 10


def test_classifier_takes_example_vectors_from_another_file():
    vectors, kind = two_kinds()
    index = SimilarityIndex(vectors)
    rows = np.flatnonzero(kind)[:5].tolist(), np.flatnonzero(~kind)[:5].tolist()
    by_rows = fit_classifier(index, *rows).probabilities(index)
    by_vectors = fit_classifier(
        index, [], [], positive_vectors=vectors[rows[0]] * 3.0, negative_vectors=vectors[rows[1]]
    ).probabilities(index)
    np.testing.assert_allclose(by_rows, by_vectors, atol=1e-5)  # scale-free: unit vectors inside


def test_parse_label_values():
    assert parse_label("Yes") is True and parse_label(0) is False and parse_label(None) is None
    assert parse_label("forest", ["forest"]) is True and parse_label("water", ["forest"]) is False
    with pytest.raises(ClayInputError, match="--positive-value"):
        parse_label("forest")


def test_decision_is_bounded_whatever_the_distance_from_the_mean():
    """On unit features |w.x + b| <= |w| + |b|: a row far from the mean cannot outrank the rest by its length."""
    vectors, kind = two_kinds()
    index = SimilarityIndex(vectors)
    classifier = fit_classifier(index, np.flatnonzero(kind)[:5].tolist(), np.flatnonzero(~kind)[:5].tolist())
    decision = classifier.decision(index)
    finite = decision[np.isfinite(decision)]
    assert np.abs(finite).max() <= np.linalg.norm(classifier.weights) + abs(classifier.bias) + 1e-9
