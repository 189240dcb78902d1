"""clay:cluster - k-means on the embeddings (numpy, in-process): a land-cover sketch without labels, styled by
category."""

from __future__ import annotations

from typing import Any

import numpy as np
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
)

from clay_qgis import compat
from clay_qgis.algorithms.base import ClayAlgorithm, StyleOnLoad
from clay_qgis.algorithms.search import add_search_inputs, load_search, search_fields
from clay_qgis.algorithms.utils import write_features

CLUSTER, DISTANCE = "cluster", "cluster_distance"
# Okabe-Ito and Tableau-like qualitative colours: distinct for neighbours, readable over imagery.
CATEGORY_COLORS = (
    "#e69f00",
    "#56b4e9",
    "#009e73",
    "#f0e442",
    "#0072b2",
    "#d55e00",
    "#cc79a7",
    "#999999",
    "#8c564b",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
)


def cluster_renderer(k: int):
    """Categorised renderer on `cluster`: one qualitative colour per cluster, thin white outlines."""
    from qgis.core import QgsCategorizedSymbolRenderer, QgsFillSymbol, QgsRendererCategory
    from qgis.PyQt.QtGui import QColor

    categories = []
    for label in range(k):
        color = QColor(CATEGORY_COLORS[label % len(CATEGORY_COLORS)])
        color.setAlpha(215)
        symbol = QgsFillSymbol.createSimple(
            {"color": color.name(QColor.NameFormat.HexArgb), "outline_color": "#ffffff", "outline_width": "0.15"}
        )
        categories.append(QgsRendererCategory(label, symbol, f"cluster {label}"))
    return QgsCategorizedSymbolRenderer(CLUSTER, categories)


def style_clusters(layer, k: int) -> None:
    layer.setRenderer(cluster_renderer(k))
    layer.triggerRepaint()
    layer.emitStyleChanged()


class ClusterAlgorithm(ClayAlgorithm):
    algorithm_id = "cluster"
    display_name = "Cluster"
    group_id = "similarity"
    group_name = "Similarity search"
    help_text = (
        "k-means on the (unit-length) embeddings of one or more files: every chip (or patch) gets a 'cluster' "
        "(0 = the largest) and its 'cluster_distance' to the cluster centre, styled with one colour per "
        "cluster: a land-cover sketch without any labels. k-means++ seeding; the same seed gives the same "
        "clusters. Runs in QGIS's own Python (numpy only)."
    )

    INPUT = "INPUT"
    MODE = "MODE"
    K = "K"
    SEED = "SEED"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        add_search_inputs(self, "Cluster each")
        self.addParameter(
            QgsProcessingParameterNumber(
                self.K,
                "Number of clusters",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=8,
                minValue=1,
                maxValue=256,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SEED, "Random seed", type=QgsProcessingParameterNumber.Type.Integer, defaultValue=0, minValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, "Clusters", QgsProcessing.SourceType.TypeVectorPolygon)
        )

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        from qgis.core import QgsField

        from clay_core.cluster import kmeans
        from clay_core.similarity import SimilarityIndex
        from clay_qgis import layers

        k = self.parameterAsInt(parameters, self.K, context)
        seed = self.parameterAsInt(parameters, self.SEED, context)
        search = load_search(self, parameters, context, feedback)
        vectors = (
            np.concatenate([target.index.vectors for target in search.targets])
            if len(search.targets) > 1
            else search.targets[0].index.vectors
        )
        clusters = kmeans(SimilarityIndex(vectors), k, seed=seed)
        target = search.targets[0]
        fields = search_fields(target.mode, scores=False)  # nothing is scored: no similarity/rank/example
        fields.append(QgsField(CLUSTER, compat.INT))
        fields.append(QgsField(DISTANCE, compat.DOUBLE))
        unclustered = clusters.labels < 0  # all-zero rows: no cluster, no distance
        labels = clusters.labels.astype(object)
        labels[unclustered] = None
        distances = clusters.distances.astype(np.float64).astype(object)
        distances[unclustered] = None
        features = search.features(fields, np.arange(len(search)), {CLUSTER: labels, DISTANCE: distances})
        sizes = np.bincount(clusters.labels[clusters.labels >= 0], minlength=k).tolist()
        feedback.pushInfo(f"{k} clusters of {len(search)} rows after {clusters.iterations} iterations; sizes {sizes}")
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, layers.POLYGON_WKB_TYPE, target.crs
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        write_features(sink, features, feedback)
        if context.willLoadLayerOnCompletion(dest_id):
            context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(
                StyleOnLoad(str(target.path), target.mode, styler=lambda layer: style_clusters(layer, k))
            )
        return {self.OUTPUT: dest_id, "SIZES": sizes}
