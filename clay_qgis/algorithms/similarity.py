"""clay:similarity - score every chip of an embeddings file against a query (chip ids, a point, or selected
features as positive and negative examples) and output the matches with `similarity` and `rank`."""

from __future__ import annotations

from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsProcessingParameterString,
)

from clay_core.errors import ClayInputError
from clay_qgis.algorithms.base import ClayAlgorithm, StyleOnLoad
from clay_qgis.algorithms.search import Search, add_search_inputs, load_search, search_fields
from clay_qgis.algorithms.utils import write_features

DEFAULT_OUTLINED = 10


class SimilarityAlgorithm(ClayAlgorithm):
    algorithm_id = "similarity"
    display_name = "Find similar chips"
    group_id = "similarity"
    group_name = "Similarity search"
    help_text = (
        "Scores every chip (or patch) of one or more embeddings files (one search) by centred cosine similarity "
        "with a query and outputs a layer with a 'similarity' field in [-1, 1], a 'rank' (1 = most similar) and "
        "the 'source_file'. Centred: with unit vectors u and m their mean over every row searched, "
        "cos(u - m, q - m) for q the mean of the positive examples, or cos(u - m, mean(pos) - mean(neg)) with "
        "negatives; it spreads the scores that plain cosine crowds near 1. Tick 'Plain cosine' for cos(u, q). "
        "Examples can be chip ids (FILE:ID when an id is in several files), "
        "a point (in any CRS: the chip that contains it), or features of a layer (tick 'Selected features only' "
        "to use a selection): features with a chip_id are matched by id (even from another embeddings file of "
        "the same model), others by the chip under their centre. Keep the top k and/or matches above a threshold."
    )

    INPUT = "INPUT"
    MORE_INPUTS = "MORE_INPUTS"
    RAW = "RAW"
    MODE = "MODE"
    CHIP_IDS = "CHIP_IDS"
    POINT = "POINT"
    POSITIVES = "POSITIVES"
    NEGATIVE_CHIP_IDS = "NEGATIVE_CHIP_IDS"
    NEGATIVES = "NEGATIVES"
    TOP_K = "TOP_K"
    THRESHOLD = "THRESHOLD"
    USE_THRESHOLD = "USE_THRESHOLD"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        add_search_inputs(self, "Score each")
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.RAW, "Plain cosine (no centring; scores of one model crowd near 1)", defaultValue=False
            )
        )
        self.addParameter(
            QgsProcessingParameterString(self.CHIP_IDS, "Query chip id(s), comma separated", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterPoint(self.POINT, "Query point (the chip containing it)", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.POSITIVES,
                "Positive examples (features)",
                [QgsProcessing.SourceType.TypeVectorAnyGeometry],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(self.NEGATIVE_CHIP_IDS, "Negative chip id(s), comma separated", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.NEGATIVES,
                "Negative examples (features)",
                [QgsProcessing.SourceType.TypeVectorAnyGeometry],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TOP_K,
                "Keep the k best matches (0 = keep all)",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.USE_THRESHOLD, "Keep only matches above the threshold", defaultValue=False
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                "Similarity threshold",
                type=QgsProcessingParameterNumber.Type.Double,
                defaultValue=0.5,
                minValue=-1.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, "Similar chips", QgsProcessing.SourceType.TypeVectorPolygon)
        )

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        from clay_core.similarity import ranks, select_matches
        from clay_qgis import layers
        from clay_qgis.session import examples_of, query_of, score_query

        centred = not self.parameterAsBoolean(parameters, self.RAW, context)
        search = load_search(self, parameters, context, feedback)
        target = search.targets[0]
        positive_rows, positive_vectors = self.examples(parameters, context, search, positive=True)
        negative_rows, negative_vectors = self.examples(parameters, context, search, positive=False)
        # The same direction and scoring functions as the find-similar map tool (exact: they are the output).
        query = query_of(target, positive_vectors, negative_vectors, centred=centred)
        per_file = [score_query(each, query, exact=True, centred=centred) for each in search.targets]
        scores = np.concatenate([scored.scores for scored in per_file])
        all_ranks = ranks(scores)
        top_k = self.parameterAsInt(parameters, self.TOP_K, context)
        threshold = (
            self.parameterAsDouble(parameters, self.THRESHOLD, context)
            if self.parameterAsBoolean(parameters, self.USE_THRESHOLD, context)
            else None
        )
        keep = select_matches(scores, top_k, threshold)
        fields = search_fields(target.mode)
        examples = examples_of(positive_rows, negative_rows)
        matches = search.features(fields, keep, layers.score_values(keep, scores, all_ranks, examples))
        feedback.pushInfo(
            f"{'plain' if not centred else 'centred'} cosine; {len(positive_vectors)} positive / "
            f"{len(negative_vectors)} negative example(s); keeping {len(keep)} of {len(scores)} rows in "
            f"{len(search.targets)} file(s); best: "
            + ", ".join(f"{search.name_of(r)} {scores[r]:+.3f}" for r in keep[:5])
        )
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, layers.POLYGON_WKB_TYPE, target.crs
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        write_features(sink, matches, feedback)
        if context.willLoadLayerOnCompletion(dest_id):
            outlined = top_k if 0 < top_k <= 100 else DEFAULT_OUTLINED
            context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(
                StyleOnLoad(
                    str(target.path),
                    target.mode,
                    {
                        "scores": scores[keep],
                        "threshold": threshold,
                        "top_k": outlined,
                        "has_negatives": bool(negative_rows),
                    },
                )
            )
        return {self.OUTPUT: dest_id}

    # -- resolving the examples --------------------------------------------------------------------
    def examples(self, parameters, context, search: Search, *, positive: bool) -> tuple[list[int], np.ndarray]:
        """(rows of the search that are examples, vectors of all examples) for one side of the query.
        Vectors may come from another embeddings file (features of a layer loaded from it)."""
        ids_name, layer_name = (self.CHIP_IDS, self.POSITIVES) if positive else (self.NEGATIVE_CHIP_IDS, self.NEGATIVES)
        what = "query" if positive else "negative"
        target = search.targets[0]
        rows = search.rows_of_chip_ids(self.parameterAsString(parameters, ids_name, context), what)
        if positive and parameters.get(self.POINT):
            rows.append(search.row_of_point(self.point_in(parameters, context, target)))
        vectors = [search.vectors(rows)] if rows else []
        if parameters.get(layer_name):
            layer_rows, other_vectors = self.rows_of_features(parameters, layer_name, context, target)
            rows += layer_rows  # rows of the first file are rows of the search (it comes first)
            vectors += other_vectors
        stacked = np.concatenate(vectors) if vectors else np.zeros((0, target.dim), dtype=np.float32)
        return sorted(set(rows)), stacked

    def point_in(self, parameters, context, target):
        """The POINT parameter in the embeddings' CRS."""
        crs = self.parameterAsPointCrs(parameters, self.POINT, context)
        if crs.isValid() and not QgsCoordinateTransform(crs, target.crs, context.transformContext()).isValid():
            raise ClayInputError(
                f"the query point's CRS {crs.authid() or crs.description()} cannot be transformed "
                f"to the embeddings' CRS {target.crs.authid()}"
            )
        return self.parameterAsPoint(parameters, self.POINT, context, target.crs)

    def rows_of_features(self, parameters, name, context, target) -> tuple[list[int], list[np.ndarray]]:
        from clay_core.similarity import check_dimension
        from clay_qgis import layers

        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            raise ClayInputError(f"the {name.lower()} layer could not be opened")
        layer = self.parameterAsVectorLayer(parameters, name, context)
        owner = layers.embedding_set_of(layer) if layer is not None else None
        if owner is not None and owner.path != target.path:
            check_dimension(target.dim, owner.dim, f"the examples' file {owner.path.name} ({owner.model_name})")
        else:
            owner = target
        field_names = source.fields().names()
        by_id = "chip_id" in field_names
        transform = None
        if not by_id:
            if not source.sourceCrs().isValid():
                raise ClayInputError(
                    f"the {name.lower()} layer has no valid CRS, so its features cannot be placed "
                    "on the chips: set the layer's CRS (Layer Properties > Source)"
                )
            transform = QgsCoordinateTransform(source.sourceCrs(), target.crs, context.transformContext())
            if not transform.isValid():
                raise ClayInputError(
                    f"no transform from the {name.lower()} layer's CRS "
                    f"{source.sourceCrs().authid()} to the embeddings' CRS {target.crs.authid()}"
                )
        owner_rows: list[int] = []
        for feature in source.getFeatures(QgsFeatureRequest()):
            if by_id:
                owner_rows += rows_of_feature_key(owner, feature, field_names)
            else:
                owner_rows.append(row_of_geometry(target, feature.geometry(), transform))
        if not owner_rows:
            raise ClayInputError(
                f"no {name.lower()} feature matches a chip of the embeddings "
                "(nothing selected, or features outside the chips)"
            )
        vectors = owner.index.vectors[owner_rows]
        target_rows = owner_rows if owner is target else []
        return target_rows, [vectors]


def rows_of_feature_key(owner, feature, field_names: list[str]) -> list[int]:
    chip_id = feature["chip_id"]
    if owner.mode == "patches" and "patch_row" in field_names and "patch_col" in field_names:
        row = owner.row_of_key((chip_id, feature["patch_row"], feature["patch_col"]))
        return [] if row is None else [row]
    return owner.rows_of_chip(chip_id)


def row_of_geometry(target, geometry, transform) -> int:
    from clay_core.similarity import row_at_point

    if geometry is None or geometry.isEmpty():
        raise ClayInputError("an example feature has no geometry and no chip_id")
    point = geometry.pointOnSurface().asPoint()
    try:
        point = transform.transform(point)
    except QgsCsException as exc:
        raise ClayInputError(f"an example feature could not be transformed to the embeddings' CRS: {exc}") from exc
    return row_at_point(target.rings, point.x(), point.y())
