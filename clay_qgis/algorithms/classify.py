"""clay:classify - labelled chips -> an L2-regularised logistic regression on the embeddings (numpy, in-process)
-> every chip's `probability` of being like the positives."""

from __future__ import annotations

from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from clay_core.errors import ClayInputError
from clay_core.parsing import comma_list
from clay_qgis import compat
from clay_qgis.algorithms.base import ClayAlgorithm, StyleOnLoad
from clay_qgis.algorithms.search import Search, add_search_inputs, load_search, search_fields
from clay_qgis.algorithms.utils import write_features

PROBABILITY = "probability"


class ClassifyAlgorithm(ClayAlgorithm):
    algorithm_id = "classify"
    display_name = "Classify from labels"
    group_id = "similarity"
    group_name = "Similarity search"
    help_text = (
        "Fits a regularised logistic regression (numpy, no extra software) on the embeddings of labelled chips and "
        "writes every chip of one or more embeddings files with its 'probability' of being positive (and a "
        "'rank'). Labels are chip ids (FILE:ID when an id is in several files) and/or a point or polygon layer "
        "with a label field: features are placed by chip_id when they have one, else by the chip under them. "
        "Label values 1/true/yes/positive are positive and 0/false/no/negative negative, or name the positive "
        "value(s) and every other value is negative. The two classes weigh the same however many labels each "
        "has. Refitting with 50 labels and scoring 100k chips takes well under a second."
    )

    INPUT = "INPUT"
    MODE = "MODE"
    POSITIVE_IDS = "POSITIVE_IDS"
    NEGATIVE_IDS = "NEGATIVE_IDS"
    LABELS = "LABELS"
    LABEL_FIELD = "LABEL_FIELD"
    POSITIVE_VALUES = "POSITIVE_VALUES"
    L2 = "L2"
    TOP_K = "TOP_K"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        from clay_core.classify import DEFAULT_L2

        add_search_inputs(self, "Classify each")
        self.addParameter(
            QgsProcessingParameterString(self.POSITIVE_IDS, "Positive chip id(s), comma separated", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterString(self.NEGATIVE_IDS, "Negative chip id(s), comma separated", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.LABELS,
                "Labelled features (points or polygons)",
                [QgsProcessing.SourceType.TypeVectorAnyGeometry],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.LABEL_FIELD, "Label field", parentLayerParameterName=self.LABELS, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.POSITIVE_VALUES,
                "Label value(s) meaning positive, comma separated (empty: 1/true/yes/positive)",
                optional=True,
            )
        )
        l2 = QgsProcessingParameterNumber(
            self.L2,
            "Regularisation strength (larger = smoother probabilities)",
            type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=DEFAULT_L2,
            minValue=1e-6,
        )
        l2.setFlags(l2.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        self.addParameter(l2)
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TOP_K,
                "Keep the k most probable chips (0 = keep all)",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, "Classified chips", QgsProcessing.SourceType.TypeVectorPolygon
            )
        )

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        from clay_core.classify import fit_classifier
        from clay_core.similarity import ranks, select_matches
        from clay_qgis import layers
        from clay_qgis.session import examples_of

        search = load_search(self, parameters, context, feedback)
        positives = search.rows_of_chip_ids(self.parameterAsString(parameters, self.POSITIVE_IDS, context), "positive")
        negatives = search.rows_of_chip_ids(self.parameterAsString(parameters, self.NEGATIVE_IDS, context), "negative")
        if parameters.get(self.LABELS):
            more_positive, more_negative = self.labelled_rows(parameters, context, search, feedback)
            positives += more_positive
            negatives += more_negative
        if not positives:
            raise ClayInputError("no positive label: give positive chip ids or labelled features")
        positive_set = set(positives)  # a row labelled both ways counts as positive
        negatives = [row for row in negatives if row not in positive_set]
        l2 = self.parameterAsDouble(parameters, self.L2, context)
        classifier = fit_classifier(  # rows span several files: the examples go in as vectors
            search.targets[0].index,
            [],
            [],
            l2=l2,
            positive_vectors=search.vectors(positives),
            negative_vectors=search.vectors(negatives) if negatives else None,
        )
        probability = np.concatenate([classifier.probabilities(target.index) for target in search.targets])
        all_ranks = ranks(probability)
        top_k = self.parameterAsInt(parameters, self.TOP_K, context)
        keep = select_matches(probability, top_k)
        target = search.targets[0]
        fields = search_fields(target.mode)
        from qgis.core import QgsField

        fields.append(QgsField(PROBABILITY, compat.DOUBLE))
        examples = examples_of(positives, negatives)
        features = search.features(
            fields, keep, layers.score_values(keep, probability, all_ranks, examples, score_field=PROBABILITY)
        )
        feedback.pushInfo(
            f"fitted on {classifier.positives} positive / {classifier.negatives} negative chip(s); "
            f"{int(np.count_nonzero(probability >= 0.5))} of {len(probability)} rows have probability "
            ">= 0.5"
        )
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, layers.POLYGON_WKB_TYPE, target.crs
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        write_features(sink, features, feedback)
        if context.willLoadLayerOnCompletion(dest_id):
            context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(
                StyleOnLoad(
                    str(target.path),
                    target.mode,
                    {
                        "scores": probability[keep],
                        "threshold": None,
                        "top_k": 0,
                        "has_negatives": bool(negatives),
                        "field": PROBABILITY,
                    },
                )
            )
        return {self.OUTPUT: dest_id}

    def labelled_rows(self, parameters, context, search: Search, feedback) -> tuple[list[int], list[int]]:
        """Rows of labelled features: by chip_id when the layer has one, else the chip under each feature."""
        from clay_core.classify import parse_label

        source = self.parameterAsSource(parameters, self.LABELS, context)
        if source is None:
            raise ClayInputError("the labelled features layer could not be opened")
        field = self.parameterAsString(parameters, self.LABEL_FIELD, context)
        names = source.fields().names()
        if not field or field not in names:
            raise ClayInputError(f"choose the label field of the labelled features (fields: {', '.join(names)})")
        positive_values = comma_list(self.parameterAsString(parameters, self.POSITIVE_VALUES, context))
        target = search.targets[0]
        transform = QgsCoordinateTransform(source.sourceCrs(), target.crs, context.transformContext())
        positives: list[int] = []
        negatives: list[int] = []
        outside = 0
        for feature in source.getFeatures():
            label = parse_label(feature[field], positive_values)
            if label is None:
                continue
            if "chip_id" in names and feature["chip_id"]:
                rows = search.rows_of_chip_ids(str(feature["chip_id"]), "labelled")
            else:
                geometry = feature.geometry()
                if geometry is None or geometry.isEmpty():
                    continue
                if not source.sourceCrs().isValid():
                    raise ClayInputError(
                        "the labelled features layer has no valid CRS: set it (Layer Properties > Source)"
                    )
                point = transform.transform(geometry.pointOnSurface().asPoint())
                try:
                    rows = [search.row_of_point(point)]
                except ClayInputError:
                    outside += 1
                    continue
            (positives if label else negatives).extend(rows)
        if outside:
            feedback.pushInfo(f"{outside} labelled feature(s) lie outside every chip and were not used")
        return positives, negatives
