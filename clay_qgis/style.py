"""How embeddings layers look: the thin chip grid before any query, and after one the viridis classes of the
scores (quantile breaks from the threshold up), outlines for the top k and the examples, and a legend that
says what the outlines mean."""

from __future__ import annotations

import numpy as np
from qgis.core import (
    QgsDefaultVectorLayerLegend,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsGraduatedSymbolRenderer,
    QgsMapLayerLegend,
    QgsMarkerSymbol,
    QgsProperty,
    QgsRendererRange,
    QgsSimpleFillSymbolLayer,
    QgsSimpleLegendNode,
    QgsSymbolLayer,
    QgsVectorLayer,
)
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QRectF, Qt
from qgis.PyQt.QtGui import QColor, QIcon, QPainter, QPixmap, QTextOption

from clay_qgis.schema import EXAMPLE, NEGATIVE, POSITIVE, RANK, SIMILARITY

# viridis sampled at 10 evenly spaced points (matplotlib's values): perceptually uniform, readable in grey
VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725")
TOP_K_COLOR = "#ff2d55"  # outline of the best matches: a red that viridis never uses
POSITIVE_COLOR = "#ffffff"  # query/positive examples: white outline + star, readable on dark and yellow
NEGATIVE_COLOR = "#000000"
FILL_ALPHA = 205  # the imagery stays faintly visible under the scores


def viridis_ramp() -> QgsGradientColorRamp:
    stops = [QgsGradientStop(i / (len(VIRIDIS) - 1), QColor(color)) for i, color in enumerate(VIRIDIS[1:-1], 1)]
    return QgsGradientColorRamp(QColor(VIRIDIS[0]), QColor(VIRIDIS[-1]), False, stops)


def _property(name: str) -> int:
    """QgsSymbolLayer property keys across QGIS versions (3.22 names vs the scoped names of 3.30+)."""
    scoped = getattr(QgsSymbolLayer, "Property", None)
    for candidate in (name, "Property" + name):
        if scoped is not None and hasattr(scoped, candidate):
            return getattr(scoped, candidate)
    return getattr(QgsSymbolLayer, "Property" + name)


def _highlight_condition(top_k: int) -> str:
    top = f' OR "{RANK}" <= {int(top_k)}' if top_k > 0 else ""
    return f'"{EXAMPLE}" IS NOT NULL{top}'


TRANSPARENT = "0,0,0,0"


def class_symbol(fill: QColor, top_k: int) -> QgsFillSymbol:
    """Fill in the class colour; outline only for the top k (red) and the examples (white/black);
    a star at the centre of each positive example, a cross on each negative one.

    The outline and marker layers get transparent static colours and their real colours from data-defined
    properties: legend swatches ignore the data-defined "enabled" switch and draw static colours only, so
    otherwise every class swatch in the Layers panel would show a red frame and a star."""
    fill = QColor(fill)
    fill.setAlpha(FILL_ALPHA)
    symbol = QgsFillSymbol.createSimple(
        {"color": fill.name(QColor.NameFormat.HexArgb), "outline_style": "no", "style": "solid"}
    )
    symbol.symbolLayer(0).setColor(fill)
    outline = QgsSimpleFillSymbolLayer.create(
        {"style": "no", "outline_color": TRANSPARENT, "outline_width": "0.7", "outline_width_unit": "MM"}
    )
    outline.setDataDefinedProperty(_property("LayerEnabled"), QgsProperty.fromExpression(_highlight_condition(top_k)))
    outline.setDataDefinedProperty(
        _property("StrokeColor"),
        QgsProperty.fromExpression(
            f"CASE WHEN \"{EXAMPLE}\" = '{POSITIVE}' THEN '{POSITIVE_COLOR}' "
            f"WHEN \"{EXAMPLE}\" = '{NEGATIVE}' THEN '{NEGATIVE_COLOR}' ELSE '{TOP_K_COLOR}' END"
        ),
    )
    outline.setDataDefinedProperty(
        _property("StrokeWidth"), QgsProperty.fromExpression(f'CASE WHEN "{EXAMPLE}" IS NOT NULL THEN 1.0 ELSE 0.7 END')
    )
    symbol.appendSymbolLayer(outline)
    symbol.appendSymbolLayer(_example_marker_layer())
    return symbol


def _example_marker_layer():
    from qgis.core import QgsCentroidFillSymbolLayer

    marker = QgsMarkerSymbol.createSimple(
        {"name": "star", "size": "5", "color": TRANSPARENT, "outline_color": TRANSPARENT, "outline_width": "0.4"}
    )
    marker.symbolLayer(0).setDataDefinedProperty(
        _property("Name"),
        QgsProperty.fromExpression(f"CASE WHEN \"{EXAMPLE}\" = '{NEGATIVE}' THEN 'cross2' ELSE 'star' END"),
    )
    marker.symbolLayer(0).setDataDefinedProperty(
        _property("FillColor"),
        QgsProperty.fromExpression(
            f"CASE WHEN \"{EXAMPLE}\" = '{NEGATIVE}' THEN '{NEGATIVE_COLOR}' ELSE '{POSITIVE_COLOR}' END"
        ),
    )
    # An expression on a field, not a constant: without a feature (legend swatches) it falls back to transparent.
    marker.symbolLayer(0).setDataDefinedProperty(
        _property("StrokeColor"), QgsProperty.fromExpression(f"CASE WHEN \"{EXAMPLE}\" IS NOT NULL THEN '#000000' END")
    )
    centroid = QgsCentroidFillSymbolLayer()
    centroid.setSubSymbol(marker)
    centroid.setPointOnSurface(True)
    centroid.setDataDefinedProperty(_property("LayerEnabled"), QgsProperty.fromExpression(f'"{EXAMPLE}" IS NOT NULL'))
    return centroid


def class_breaks(scores: np.ndarray, threshold: float | None, classes: int) -> np.ndarray:
    """Quantile breaks of the scores at or above the threshold: similarity scores of one model are usually
    crowded near the top (e.g. 0.95-1.00), and equal intervals would paint almost every chip one colour."""
    finite = scores[np.isfinite(scores)]
    if threshold is not None:
        finite = finite[finite >= threshold]
    if finite.size == 0:
        low = -1.0 if threshold is None else float(threshold)
        return np.array([low, max(low + 1e-3, 1.0)])
    breaks = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, classes + 1)))
    if len(breaks) < 2:
        value = float(breaks[0])
        breaks = np.array([value - 1e-3, value])
    if threshold is not None:
        breaks[0] = min(breaks[0], float(threshold))
    return breaks


def similarity_renderer(
    scores: np.ndarray, *, threshold: float | None = None, top_k: int = 10, classes: int = 7, field: str = SIMILARITY
) -> QgsGraduatedSymbolRenderer:
    """Graduated renderer on `similarity`: viridis quantile classes from the threshold to the best score; chips
    below the threshold fall outside every class and are not drawn, so the imagery shows through."""
    breaks = class_breaks(np.asarray(scores, dtype=np.float64), threshold, classes)
    ramp = viridis_ramp()
    ranges = []
    for index, (low, high) in enumerate(zip(breaks[:-1], breaks[1:], strict=True)):
        color = ramp.color(index / max(1, len(breaks) - 2))
        # Widen the outer edges a hair so the lowest/highest score is never lost to rounding.
        low_edge = low - 1e-6 if index == 0 else low
        high_edge = high + 1e-6 if index == len(breaks) - 2 else high
        ranges.append(QgsRendererRange(low_edge, high_edge, class_symbol(color, top_k), f"{low:.3f} – {high:.3f}"))
    if not ranges:
        ranges.append(QgsRendererRange(-1.0, 1.0, class_symbol(ramp.color(1.0), top_k), "-1.000 – 1.000"))
    renderer = QgsGraduatedSymbolRenderer(field, ranges)
    renderer.setSourceColorRamp(ramp)
    renderer.setClassAttribute(field)
    # Best matches and the examples are drawn last, so their outlines are not hidden by neighbours.
    order = QgsFeatureRequest.OrderBy(
        [
            QgsFeatureRequest.OrderByClause(
                f'coalesce("{field}", -2) + CASE WHEN "{EXAMPLE}" IS NULL THEN 0 ELSE 4 END', True
            )
        ]
    )
    renderer.setOrderBy(order)
    renderer.setOrderByEnabled(True)
    return renderer


def _swatch(outline: str, fill: str | None = None, marker: str | None = None) -> QIcon:
    pixmap = QPixmap(16, 16)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    pen = painter.pen()
    pen.setColor(QColor(outline))
    pen.setWidth(2)
    painter.setPen(pen)
    painter.setBrush(QColor(fill) if fill else QColor(0, 0, 0, 0))
    painter.drawRect(2, 2, 12, 12)
    if marker:
        painter.setPen(QColor("#000000"))
        painter.drawText(QRectF(pixmap.rect()), marker, QTextOption(Qt.AlignmentFlag.AlignCenter))
    painter.end()
    return QIcon(pixmap)


class SimilarityLegend(QgsMapLayerLegend):
    """The graduated classes plus what the outlines mean (top k, positive and negative examples)."""

    def __init__(self, layer: QgsVectorLayer, top_k: int, has_negatives: bool) -> None:
        super().__init__()
        self._default = QgsDefaultVectorLayerLegend(layer)
        self._top_k = top_k
        self._has_negatives = has_negatives

    def createLayerTreeModelLegendNodes(self, node_layer):  # noqa: N802 - QGIS API
        nodes = list(self._default.createLayerTreeModelLegendNodes(node_layer))
        if self._top_k > 0:
            nodes.append(
                QgsSimpleLegendNode(node_layer, f"top {self._top_k} matches (red outline)", _swatch(TOP_K_COLOR))
            )
        nodes.append(
            QgsSimpleLegendNode(
                node_layer, "query / positive example (white, ★)", _swatch("#000000", POSITIVE_COLOR, "★")
            )
        )
        if self._has_negatives:
            nodes.append(
                QgsSimpleLegendNode(node_layer, "negative example (black, ✕)", _swatch(NEGATIVE_COLOR, "#bbbbbb", "✕"))
            )
        for node in nodes:  # the layer tree model owns and deletes the nodes, not Python
            sip.transferto(node, None)
        return nodes


def style_similarity(
    layer: QgsVectorLayer,
    scores: np.ndarray,
    *,
    threshold: float | None = None,
    top_k: int = 10,
    has_negatives: bool = False,
    field: str = SIMILARITY,
) -> None:
    layer.setRenderer(similarity_renderer(scores, threshold=threshold, top_k=top_k, field=field))
    layer.setLegend(SimilarityLegend(layer, top_k, has_negatives))
    layer.triggerRepaint()
    layer.emitStyleChanged()


def style_chip_grid(layer: QgsVectorLayer) -> None:
    """Before any query: thin outlines only, so the imagery under the chips stays visible."""
    from qgis.core import QgsSingleSymbolRenderer

    symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": "#f2f2f2", "outline_width": "0.2"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()
