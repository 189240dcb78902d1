"""The interactive search the map tool and the dock share: every embeddings layer of the project (of the same
model as the clicked one) is one search, so a click on one tile restyles all of them.

Two ways to score, on the same examples (clicked chips on any of the layers):
- similar (default): centred cosine with the examples (clay_core.similarity; the joint mean of all the layers'
  unit vectors is the centre, as `clay similar A.gpq B.gpq` would use);
- classifier: with at least one positive and one negative example, a logistic regression is fitted on them
  (clay_core.classify, numpy) and every chip gets a `probability`; each new label refits (milliseconds) and
  rescoring 100k chips is one matrix-vector product.
Scores are written into each layer (one provider call per layer), the layers share one set of class breaks
and one rank order (the outlined top k are the best of all layers).

The query step itself (examples_of, query_of, score_query) is shared with clay:similarity, so a click and the
algorithm give the same scores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qgis.core import QgsProject, QgsVectorLayer

from clay_core.errors import ClayInputError
from clay_core.similarity import Scored, centre_jointly, check_dimension, ranks, select_matches
from clay_qgis import compat, layers, style
from clay_qgis.schema import NEGATIVE, POSITIVE, SIMILARITY, SOURCE_FILE, layer_fields
from clay_qgis.vector_cache import EmbeddingSet

if TYPE_CHECKING:
    from clay_core.classify import Classifier

SIMILAR, CLASSIFIER = "similar", "classifier"
PROBABILITY = "probability"


# ----------------------------------------------------------------------------------------------
# One query, end to end: clay:similarity, the map tool and the dock all go through here
# ----------------------------------------------------------------------------------------------


def examples_of(positives: list[int], negatives: list[int]) -> dict[int, str]:
    examples = {row: NEGATIVE for row in negatives}
    examples.update({row: POSITIVE for row in positives})  # a row given as both counts as positive
    return examples


# Above this many rows a click scores through the two-stage sketch (clay_core.similarity.ProjectedIndex):
# exact scores for the best EXACT_TOP_MIN (or top k) rows, approximate colours for the rest. Below it exact
# scoring is already fast (100k x 768: ~0.1 s), so small layers always show exact scores.
FAST_PATH_ROWS = 200_000
EXACT_TOP_MIN = 100


def score_query(
    embedding_set: EmbeddingSet, query: np.ndarray, *, top_k: int = 10, exact: bool = False, centred: bool = True
) -> Scored:
    """Scores and ranks of every row for a unit query: the one scoring step behind clay:similarity, the map
    tool and the dock. Interactive callers (exact=False) on large files use the sketch once it is built; it is
    built in a background thread on the first click (seconds for 1M rows) while that click is scored exactly.
    clay:similarity writes the scores into its output, so it asks for exact scores."""
    index = embedding_set.index
    if not exact and len(index) > FAST_PATH_ROWS:
        if index.projection_ready():
            scores = index.fast_scores(query, exact_top=max(top_k, EXACT_TOP_MIN), centred=centred).scores
            return Scored(scores=scores, ranks=ranks(scores))
        embedding_set.sketch_build = index.build_projection_in_background() or embedding_set.sketch_build
    return index.score(query, centred=centred)


def query_of(
    embedding_set: EmbeddingSet,
    positive_vectors: np.ndarray,
    negative_vectors: np.ndarray | None = None,
    *,
    centred: bool = True,
) -> np.ndarray:
    """mean(positives) - mean(negatives) on unit vectors, checked against the file's dimension. The vectors
    may come from another file of the same model (clay:similarity's example layers)."""
    positive_vectors = np.atleast_2d(np.asarray(positive_vectors, dtype=np.float32))
    if positive_vectors.size == 0:
        raise ClayInputError("no query: give query chip id(s), a query point or positive example features")
    check_dimension(embedding_set.dim, positive_vectors.shape[1], "the positive examples")
    has_negatives = negative_vectors is not None and np.asarray(negative_vectors).size
    # centred: the direction from the search mean (clay_core.similarity's module doc); raw: combine_query
    return embedding_set.index.direction_of(
        positive_vectors, negative_vectors if has_negatives else None, centred=centred
    )


# ----------------------------------------------------------------------------------------------
# The interactive search over the project's embeddings layers
# ----------------------------------------------------------------------------------------------


@dataclass
class Member:
    layer: QgsVectorLayer
    embedding_set: EmbeddingSet
    scored: Scored | None = None


def expanded_layers(layer_list: list[QgsVectorLayer]) -> list[str]:
    """Ids of the layers whose Layers-panel node is open now."""
    root = QgsProject.instance().layerTreeRoot()
    nodes = [(layer.id(), root.findLayer(layer.id())) for layer in layer_list]
    return [layer_id for layer_id, node in nodes if node is not None and node.isExpanded()]


def restore_expanded(layer_ids: list[str]) -> None:
    """Re-open those nodes after a restyle. QGIS 3.22 rebuilds a layer's legend rows on every restyle, and after
    a new field or several restyles in one turn its Layers view collapses the layer and marks the node closed;
    re-opening now and once the event loop has run (the view may collapse it again then) keeps the classes
    visible. Layers the user closed stay closed (they are not in the list)."""
    from qgis.PyQt.QtCore import QTimer

    def reopen() -> None:
        root = QgsProject.instance().layerTreeRoot()
        for layer_id in layer_ids:
            node = root.findLayer(layer_id)
            if node is not None:
                node.setExpanded(True)

    reopen()
    QTimer.singleShot(0, reopen)
    QTimer.singleShot(250, reopen)


def embedding_layers(like: EmbeddingSet | None = None) -> list[QgsVectorLayer]:
    """The project's layers made from embeddings files (of the same dimension as `like`), in layer order."""
    found = []
    for layer in QgsProject.instance().mapLayers().values():
        if not isinstance(layer, QgsVectorLayer) or not layer.customProperty(layers.PATH_PROPERTY):
            continue
        try:
            embedding_set = layers.embedding_set_of(layer)
        except ClayInputError:
            continue  # a layer whose file is gone: not part of the search
        if embedding_set is not None and (like is None or embedding_set.dim == like.dim):
            found.append(layer)
    return found


class SearchSession:
    """Examples, threshold, top k, scoring mode and the last scores of one search over several layers.

    For the dock the first clicked layer is `layer`; `positives`/`negatives` are the example rows of that
    layer, `scored` its scores; `all_scores` holds every layer's scores (histogram, class breaks)."""

    def __init__(
        self, layer: QgsVectorLayer, *, top_k: int = 10, threshold: float | None = None, centred: bool = True
    ) -> None:
        embedding_set = layers.embedding_set_of(layer)
        if embedding_set is None:
            raise ClayInputError(
                f"layer {layer.name()!r} was not loaded from an embeddings file: load one with "
                "'Load embeddings' (or embed imagery) first"
            )
        self.layer = layer
        self.embedding_set = embedding_set
        self.top_k = top_k
        self.threshold = threshold
        self.centred = centred
        self.mode = SIMILAR
        self.examples: list[tuple[str, int, str]] = []  # (layer id, row, POSITIVE/NEGATIVE)
        self.members: list[Member] = []
        self.all_scores: np.ndarray | None = None
        self.classifier: Classifier | None = None
        self.message = ""

    # -- the dock's view of the first layer --------------------------------------------------------
    def _rows_of(self, layer_id: str, role: str) -> list[int]:
        return [row for lid, row, kind in self.examples if lid == layer_id and kind == role]

    @property
    def positives(self) -> list[int]:
        return self._rows_of(self.layer.id(), POSITIVE)

    @property
    def negatives(self) -> list[int]:
        return self._rows_of(self.layer.id(), NEGATIVE)

    @property
    def scored(self) -> Scored | None:
        for member in self.members:
            if member.layer is self.layer:
                return member.scored
        return None

    @property
    def score_field(self) -> str:
        return PROBABILITY if self.mode == CLASSIFIER and self.classifier is not None else SIMILARITY

    def counts(self) -> tuple[int, int]:
        positives = sum(1 for *_, kind in self.examples if kind == POSITIVE)
        return positives, len(self.examples) - positives

    # -- examples and scoring ----------------------------------------------------------------------
    def add_example(self, row: int, role: str = "replace", layer: QgsVectorLayer | None = None) -> SearchSession:
        """role: "replace" (a plain click: a new query), "positive" (shift) or "negative" (ctrl)."""
        layer_id = (layer or self.layer).id()
        key = [(lid, r) for lid, r, _ in self.examples]
        if role == "replace":
            self.examples = [(layer_id, row, POSITIVE)]
        elif role in (POSITIVE, NEGATIVE):
            if role == NEGATIVE and not any(kind == POSITIVE for *_, kind in self.examples):
                raise ClayInputError("click a chip first (the query), then ctrl-click chips it should not match")
            if (layer_id, row) in key:  # a chip given again changes its role
                self.examples = [item for item in self.examples if (item[0], item[1]) != (layer_id, row)]
            self.examples.append((layer_id, row, role))
            if not any(kind == POSITIVE for *_, kind in self.examples):
                self.examples.append((layer_id, row, POSITIVE))
        else:
            raise ValueError(role)
        self.rescore()
        return self

    def set_mode(self, mode: str) -> None:
        if mode not in (SIMILAR, CLASSIFIER):
            raise ValueError(mode)
        self.mode = mode
        if self.examples:
            self.rescore()

    def _refresh_members(self) -> None:
        """Every embeddings layer of the project of the same model (the clicked layer always)."""
        wanted = embedding_layers(self.embedding_set)
        if self.layer not in wanted:
            wanted.insert(0, self.layer)
        known = {member.layer.id(): member for member in self.members}
        self.members = [known.get(layer.id()) or Member(layer, self._embedding_set_of(layer)) for layer in wanted]
        example_layers = {lid for lid, *_ in self.examples}
        missing = example_layers - {member.layer.id() for member in self.members}
        if missing:  # a layer with examples was removed: its examples go with it
            self.examples = [item for item in self.examples if item[0] not in missing]
        if not any(kind == POSITIVE for *_, kind in self.examples):
            self.examples = []  # negatives alone say nothing to search for (the query's layer was removed)

    def _embedding_set_of(self, layer: QgsVectorLayer) -> EmbeddingSet:
        if layer is self.layer:
            return self.embedding_set
        embedding_set = layers.embedding_set_of(layer)
        assert embedding_set is not None  # embedding_layers() lists only layers that have one
        return embedding_set

    def _example_vectors(self, role: str) -> np.ndarray | None:
        by_id = {member.layer.id(): member for member in self.members}
        vectors = [by_id[lid].embedding_set.index.vectors[row] for lid, row, kind in self.examples if kind == role]
        return np.stack(vectors) if vectors else None

    def rescore(self) -> None:
        self._refresh_members()
        if not self.examples:
            return
        centre_jointly([member.embedding_set.index for member in self.members])
        positive, negative = self._example_vectors(POSITIVE), self._example_vectors(NEGATIVE)
        assert positive is not None  # add_example and _refresh_members keep a positive whenever there are examples
        per_member = self._classify(positive, negative) if self.mode == CLASSIFIER else None
        if per_member is None:
            self.classifier = None
            direction = self.members[0].embedding_set.index.direction_of(positive, negative, centred=self.centred)
            per_member = [
                score_query(member.embedding_set, direction, top_k=self.top_k, centred=self.centred).scores
                for member in self.members
            ]
        self.all_scores = np.concatenate(per_member)
        all_ranks = ranks(self.all_scores)
        start = 0
        for member, scores in zip(self.members, per_member, strict=True):
            member.scored = Scored(scores=scores, ranks=all_ranks[start : start + len(scores)])
            start += len(scores)
            examples = {row: kind for lid, row, kind in self.examples if lid == member.layer.id()}
            layers.write_scores(
                member.layer,
                layers.row_fids(member.layer, member.embedding_set),
                scores,
                member.scored.ranks,
                examples,
                score_field=self.score_field,
            )
        self.restyle()

    def _classify(self, positive: np.ndarray | None, negative: np.ndarray | None) -> list[np.ndarray] | None:
        """Probabilities per member, or None (with a message) while there are not both kinds of examples."""
        from clay_core.classify import fit_classifier

        if positive is None or negative is None:
            self.message = "classifier: add a negative example (ctrl-click) to fit it; showing similarity meanwhile"
            return None
        first = self.members[0].embedding_set.index  # the examples come from several layers: given as vectors
        classifier = fit_classifier(first, [], [], positive_vectors=positive, negative_vectors=negative)
        self.classifier = classifier
        self.message = (
            f"classifier fitted on {classifier.positives} positive / {classifier.negatives} negative example(s)"
        )
        return [classifier.probabilities(member.embedding_set.index) for member in self.members]

    def restyle(self) -> None:
        if self.all_scores is None:
            return
        has_negatives = any(kind == NEGATIVE for *_, kind in self.examples)
        expanded = expanded_layers([member.layer for member in self.members])
        for member in self.members:
            style.style_similarity(
                member.layer,
                self.all_scores,
                threshold=self.threshold,
                top_k=self.top_k,
                has_negatives=has_negatives,
                field=self.score_field,
            )
        restore_expanded(expanded)

    def set_view(
        self, *, threshold: float | None = None, top_k: int | None = None, clear_threshold: bool = False
    ) -> None:
        if threshold is not None or clear_threshold:
            self.threshold = threshold
        if top_k is not None:
            self.top_k = top_k
        self.restyle()

    def clear(self) -> None:
        self.examples, self.all_scores, self.classifier, self.message = [], None, None, ""
        for member in self.members:
            fids = layers.row_fids(member.layer, member.embedding_set)
            indexes: tuple[int, ...] = layers.ensure_score_fields(member.layer)
            if member.layer.fields().indexOf(PROBABILITY) >= 0:
                indexes = (*indexes, member.layer.fields().indexOf(PROBABILITY))
            member.layer.dataProvider().changeAttributeValues(
                {fid: dict.fromkeys(indexes) for fid in fids[fids >= 0].tolist()}
            )
            member.scored = None
            style.style_chip_grid(member.layer)

    # -- matches -----------------------------------------------------------------------------------
    def match_rows(self) -> np.ndarray:
        """Rows over all layers (in member order, then row order) of the top k above the threshold, best first."""
        if self.all_scores is None:
            return np.zeros(0, dtype=np.int64)
        return select_matches(self.all_scores, self.top_k, self.threshold)

    def export_matches(self, path: str | Path) -> int:
        """The current matches of every layer to one GeoPackage (with `source_file`); returns the count."""
        from qgis.core import QgsCoordinateTransformContext, QgsField, QgsVectorFileWriter

        from clay_core.atomic import atomic_output

        if self.all_scores is None:
            raise ClayInputError("nothing to export yet: click a chip first")
        fields = layer_fields(self.embedding_set.mode)
        fields.append(QgsField(SOURCE_FILE, compat.STRING))
        if self.score_field == PROBABILITY:
            fields.append(QgsField(PROBABILITY, compat.DOUBLE))
        offsets = np.cumsum([0] + [len(member.embedding_set) for member in self.members])
        by_id = {member.layer.id(): start for member, start in zip(self.members, offsets[:-1].tolist(), strict=True)}
        examples = {by_id[lid] + row: kind for lid, row, kind in self.examples if lid in by_id}
        rows = self.match_rows()
        values = layers.score_values(rows, self.all_scores, ranks(self.all_scores), examples, self.score_field)
        embedding_sets = [member.embedding_set for member in self.members]
        features = layers.features_across(embedding_sets, offsets, fields, rows, values)
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = "matches"
        with atomic_output(path) as temporary:  # a failed export never leaves a broken file under its name
            staged = temporary.with_name(temporary.name + ".gpkg")  # QGIS appends the driver's extension
            try:
                writer = QgsVectorFileWriter.create(
                    str(staged),
                    fields,
                    layers.POLYGON_WKB_TYPE,
                    self.embedding_set.crs,
                    QgsCoordinateTransformContext(),
                    options,
                )
                if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
                    raise ClayInputError(f"cannot write {path}: {writer.errorMessage()}")
                written = writer.addFeatures(features)
                del writer  # flushes and closes the GeoPackage
                if not written:
                    raise ClayInputError(f"cannot write the matches to {path}")
                os.replace(staged, temporary)
            finally:
                staged.unlink(missing_ok=True)
        return len(features)
