"""clay:embedlocations - SatCLIP location embeddings of a point layer.

The points go to the worker as a small lon/lat CSV (any layer, memory layers included, any CRS);
the worker writes the embeddings GeoParquet. The output layer is the input's features with a
`clay_id` field that joins them to the rows (`chip_id`) of that file, so "Load embeddings" and
"Find similar" work on it as on chips.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)

from clay_core import validate
from clay_qgis import compat
from clay_qgis.algorithms.base import ClayAlgorithm, make_output_folder
from clay_qgis.algorithms.utils import GEOPARQUET_OUTPUT_FILTER

ID_FIELD_NAME = "clay_id"
CSV_ID, CSV_LON, CSV_LAT = "point_id", "lon", "lat"


class EmbedLocationsAlgorithm(ClayAlgorithm):
    algorithm_id = "embedlocations"
    display_name = "Embed locations (SatCLIP)"
    help_text = (
        "Turns every point of a layer into a SatCLIP location embedding: a 256-number summary of what "
        "satellites see around that place, learned from Sentinel-2 imagery worldwide. Give a released SatCLIP "
        "checkpoint (satclip-resnet18-l10.ckpt, satclip-vit16-l40.ckpt, ...). The embeddings are written to a "
        "GeoParquet file (one row per point, chip_id = the point's id); the output layer is the input layer "
        f"plus a '{ID_FIELD_NAME}' field that links each point to its row. Use 'Find similar' on the file to "
        "find places located alike. Points in any CRS are converted to longitude/latitude first."
    )

    INPUT = "INPUT"
    ID_FIELD = "ID_FIELD"
    OUTPUT_EMBEDDINGS = "OUTPUT_EMBEDDINGS"
    OUTPUT = "OUTPUT"
    POINTS = "POINTS"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.INPUT, "Point layer", [QgsProcessing.SourceType.TypeVectorPoint])
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.CHECKPOINT,
                "SatCLIP checkpoint (.ckpt)",
                optional=True,
                fileFilter="Checkpoints (*.ckpt *.pt *.pth *.safetensors)",
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.MODEL, "Or a preset (satclip-l10, satclip-l40; random weights, for testing)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.ID_FIELD,
                "Field with unique point ids (default: feature id)",
                parentLayerParameterName=self.INPUT,
                optional=True,
            )
        )
        self.add_device_parameter()
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_EMBEDDINGS, "Embeddings (GeoParquet)", fileFilter=GEOPARQUET_OUTPUT_FILTER
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, "Points with embedding ids", QgsProcessing.SourceType.TypeVectorPoint
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.POINTS, "Number of points embedded"))

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _lonlat(feature: QgsFeature, transform: QgsCoordinateTransform) -> tuple[float, float]:
        geometry = feature.geometry()
        if geometry.isNull() or geometry.isEmpty():
            raise QgsProcessingException(f"feature {feature.id()} has no geometry; remove it or fix it")
        if geometry.isMultipart():
            parts = geometry.asMultiPoint()
            if len(parts) != 1:
                raise QgsProcessingException(
                    f"feature {feature.id()} has {len(parts)} points; use single points (Multipart to singleparts)"
                )
            point = parts[0]
        else:
            point = geometry.asPoint()
        lonlat = transform.transform(point)
        return lonlat.x(), lonlat.y()

    def _write_points_csv(self, source, id_field: str, context, feedback) -> tuple[str, list[tuple[QgsFeature, str]]]:
        transform = QgsCoordinateTransform(
            source.sourceCrs(), QgsCoordinateReferenceSystem("EPSG:4326"), context.transformContext()
        )
        path = os.path.join(QgsProcessingUtils.tempFolder(), f"clay_points_{id(self)}.csv")
        features: list[tuple[QgsFeature, str]] = []
        seen: set[str] = set()
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([CSV_ID, CSV_LON, CSV_LAT])
            for feature in source.getFeatures():
                if feedback.isCanceled():
                    break
                point_id = str(feature[id_field]) if id_field else str(feature.id())
                if point_id in seen or (id_field and feature[id_field] is None):
                    raise QgsProcessingException(
                        f"id field '{id_field}' has empty or repeated values; "
                        "choose a field with unique ids or leave it empty"
                    )
                seen.add(point_id)
                lon, lat = self._lonlat(feature, transform)
                writer.writerow([point_id, repr(lon), repr(lat)])
                features.append((feature, point_id))
        if not features:
            raise QgsProcessingException("the point layer has no features")
        return path, features

    @staticmethod
    def _output_fields(source_fields: QgsFields) -> tuple[QgsFields, str]:
        name = ID_FIELD_NAME
        while source_fields.indexOf(name) >= 0:
            name += "_"
        fields = QgsFields(source_fields)
        fields.append(QgsField(name, compat.STRING))
        return fields, name

    # -- run --------------------------------------------------------------------------------------
    def command(self, parameters, context, feedback) -> list[str]:
        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        id_field = self.parameterAsString(parameters, self.ID_FIELD, context)
        self.output_path = self.parameterAsFileOutput(parameters, self.OUTPUT_EMBEDDINGS, context)
        make_output_folder(Path(self.output_path).parent)
        validate.output_file(self.output_path, True, option="Embeddings file", suffixes=())  # the CLI's check, first
        model_arguments = self.satclip_model_arguments(parameters, context)
        csv_path, self.features = self._write_points_csv(source, id_field, context, feedback)
        self.temporaries.callback(os.remove, csv_path)  # once the worker has read it
        self.source = source
        return [
            "embed-locations",
            csv_path,
            "-o",
            self.output_path,
            *model_arguments,
            "--id-field",
            CSV_ID,
            "--device",
            self.device_value(parameters, context),
            "--overwrite",
        ]

    def load_results(self, result, parameters, context, feedback) -> dict[str, Any]:
        source = self.source
        fields, id_name = self._output_fields(source.fields())
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for feature, point_id in self.features:
            copy = QgsFeature(fields)
            copy.setGeometry(feature.geometry())
            copy.setAttributes(list(feature.attributes()) + [point_id])
            sink.addFeature(copy, QgsFeatureSink.Flag.FastInsert)
        feedback.pushInfo(
            f"{result.get('points')} points embedded with {result.get('model')} on "
            f"{result.get('device')} ({result.get('points_per_second')} points/s)"
        )
        return {
            self.OUTPUT: dest_id,
            self.OUTPUT_EMBEDDINGS: result.get("output", self.output_path),
            self.POINTS: result.get("points"),
        }
