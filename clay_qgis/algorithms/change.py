"""clay:change - two embedding files of one area at two dates -> how much each chip (or patch) changed:
1 - cos(before, after), matched by footprint, not by row order."""

from __future__ import annotations

from typing import Any

import numpy as np
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
)

from clay_qgis import compat
from clay_qgis.algorithms.base import LAYER_MODES, ClayAlgorithm, StyleOnLoad
from clay_qgis.algorithms.utils import GEOPARQUET_FILTER, write_features

CHANGE = "change"
# Light yellow -> dark red (ColorBrewer YlOrRd): little change stays pale, strong change stands out.
CHANGE_COLORS = ("#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#f03b20", "#bd0026")


def change_renderer(values: np.ndarray):
    """Graduated renderer on `change`: equal intervals from the least to the most changed chip, so unchanged
    chips stay pale and only real change turns red (quantile classes would paint a sixth of any pair red)."""
    from qgis.core import QgsFillSymbol, QgsGraduatedSymbolRenderer, QgsRendererRange
    from qgis.PyQt.QtGui import QColor

    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 2.0)
    high = max(high, low + 1e-6)
    breaks = np.linspace(low, high, len(CHANGE_COLORS) + 1)
    ranges = []
    for index, (start, stop) in enumerate(zip(breaks[:-1], breaks[1:], strict=True)):
        color = QColor(CHANGE_COLORS[index])
        color.setAlpha(215)
        symbol = QgsFillSymbol.createSimple(
            {"color": color.name(QColor.NameFormat.HexArgb), "outline_color": "#80808080", "outline_width": "0.1"}
        )
        low_edge = start - 1e-9 if index == 0 else start
        high_edge = stop + 1e-9 if index == len(breaks) - 2 else stop
        ranges.append(QgsRendererRange(low_edge, high_edge, symbol, f"{start:.4f} – {stop:.4f}"))
    return QgsGraduatedSymbolRenderer(CHANGE, ranges)


def style_change(layer, values: np.ndarray) -> None:
    layer.setRenderer(change_renderer(values))
    layer.triggerRepaint()
    layer.emitStyleChanged()


class ChangeAlgorithm(ClayAlgorithm):
    algorithm_id = "change"
    display_name = "Change between dates"
    group_id = "similarity"
    group_name = "Similarity search"
    help_text = (
        "Compares two embeddings files of the same area at two dates (same model and chip grid): every chip, or "
        "every patch of patch-level files, gets 'change' = 1 - cos(before, after) in [0, 2] (0 = unchanged). "
        "Chips are matched by their footprint, not by row order; chips found at one date only are counted and "
        "left out. Most changed first, styled in equal steps from pale (least) to dark red (most changed)."
    )

    BEFORE = "BEFORE"
    AFTER = "AFTER"
    MODE = "MODE"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFile(self.BEFORE, "Embeddings before (GeoParquet)", fileFilter=GEOPARQUET_FILTER)
        )
        self.addParameter(
            QgsProcessingParameterFile(self.AFTER, "Embeddings after (GeoParquet)", fileFilter=GEOPARQUET_FILTER)
        )
        self.addParameter(QgsProcessingParameterEnum(self.MODE, "Compare each", options=LAYER_MODES, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, "Change", QgsProcessing.SourceType.TypeVectorPolygon)
        )

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        from qgis.core import QgsField

        from clay_core.change import cosine_distance, footprint_keys, match_footprints, most_changed_first
        from clay_core.similarity import check_dimension, ring_bounds
        from clay_qgis import layers
        from clay_qgis.schema import layer_fields
        from clay_qgis.vector_cache import load_embedding_set

        mode = LAYER_MODES[self.parameterAsEnum(parameters, self.MODE, context)]
        before = load_embedding_set(self.parameterAsFile(parameters, self.BEFORE, context), mode, feedback)
        after = load_embedding_set(self.parameterAsFile(parameters, self.AFTER, context), mode, feedback)
        check_dimension(before.dim, after.dim, f"{after.path.name} ({after.model_name})")
        # CRS84 polygon bounds to 1e-7 degrees: both files' polygons come from the same UTM footprints by
        # the same rule, so equal footprints give equal keys (patch polygons included)
        keys_before, kind = footprint_keys(None, None, ring_bounds(before.rings))
        keys_after, _ = footprint_keys(None, None, ring_bounds(after.rings))
        matched = match_footprints(keys_before, keys_after, kind)
        distance = cosine_distance(before.index.vectors, after.index.vectors, matched.rows_a, matched.rows_b)
        order = most_changed_first(distance)
        fields = layer_fields(before.mode, scores=False)  # nothing is scored: no similarity/rank/example
        for name, kind_of in ((CHANGE, compat.DOUBLE), ("date_after", compat.DATE)):
            fields.append(QgsField(name, kind_of))
        rows_before = matched.rows_a[order]
        change = distance[order].astype(object)
        change[np.isnan(distance[order])] = None
        dates_after = after.columns["date"]
        date_after = [layers.qdate(dates_after[row]) for row in matched.rows_b[order].tolist()]
        features = layers.features_for(before, fields, rows_before, {CHANGE: change, "date_after": date_after})
        feedback.pushInfo(
            f"{len(matched.rows_a)} {'patches' if before.mode == 'patches' else 'chips'} matched by "
            f"footprint ({matched.only_in_a} only before, {matched.only_in_b} only after); median "
            f"change {float(np.nanmedian(distance)):.4f}, max {float(np.nanmax(distance)):.4f}"
        )
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, layers.POLYGON_WKB_TYPE, before.crs
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        write_features(sink, features, feedback)
        if context.willLoadLayerOnCompletion(dest_id):
            values = distance.copy()
            context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(
                StyleOnLoad(str(before.path), before.mode, styler=lambda layer: style_change(layer, values))
            )
        return {
            self.OUTPUT: dest_id,
            "MATCHED": int(len(matched.rows_a)),
            "ONLY_BEFORE": matched.only_in_a,
            "ONLY_AFTER": matched.only_in_b,
        }
