"""clay:loadembeddings - an embeddings GeoParquet file as a vector layer (one feature per chip or per patch)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
)

from clay_qgis.algorithms.base import LAYER_MODES, ClayAlgorithm, StyleOnLoad
from clay_qgis.algorithms.utils import GEOPARQUET_FILTER, write_features


class LoadEmbeddingsAlgorithm(ClayAlgorithm):
    algorithm_id = "loadembeddings"
    display_name = "Load embeddings"
    help_text = (
        "Reads an embeddings GeoParquet file (written by Embed raster layer / Embed MGRS tile, `clay embed`, or "
        "Clay's published files) into a layer: one polygon per chip, or one per patch for patch- or group-level "
        "files ('patches'). Only scalar attributes (chip_id, date, source_url, row, col, nodata_fraction) go into "
        "the layer; the vectors stay in memory for Find similar chips and the find-similar map tool. The file is read "
        "with pyarrow or GDAL's Parquet driver when this QGIS has one, otherwise converted once by the Clay "
        "runtime (Set up Clay runtime...)."
    )

    INPUT = "INPUT"
    MODE = "MODE"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFile(self.INPUT, "Embeddings file (GeoParquet)", fileFilter=GEOPARQUET_FILTER)
        )
        self.addParameter(QgsProcessingParameterEnum(self.MODE, "One feature per", options=LAYER_MODES, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, "Embeddings layer", QgsProcessing.SourceType.TypeVectorPolygon
            )
        )

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        from clay_qgis import layers
        from clay_qgis.schema import layer_fields
        from clay_qgis.vector_cache import load_embedding_set

        path = self.parameterAsFile(parameters, self.INPUT, context)
        mode = LAYER_MODES[self.parameterAsEnum(parameters, self.MODE, context)]
        embedding_set = load_embedding_set(path, mode, feedback)
        feedback.pushInfo(f"{path}: {embedding_set.describe()} (read with {embedding_set.reader})")
        fields = layer_fields(embedding_set.mode)
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, layers.POLYGON_WKB_TYPE, embedding_set.crs
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        write_features(sink, layers.features_for(embedding_set, fields), feedback)
        if context.willLoadLayerOnCompletion(dest_id):
            context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(
                StyleOnLoad(str(embedding_set.path), embedding_set.mode)
            )
        return {self.OUTPUT: dest_id}
