"""The find-similar map tool: click a chip -> every chip of the layer is scored and styled.

Plain click: a new query. Shift-click: add a positive example. Ctrl-click: add a negative example.
Works on any layer made from an embeddings file (chips or exploded patches).

Why this calls `layers.SimilaritySession` and not the `clay:similarity` algorithm (DESIGN says GUI parts call
the Processing algorithms): a click must restyle the layer the user is looking at, in place, in well under a
second. `clay:similarity` writes a new output layer per run (a new layer per click, loaded through Processing's
post-processing), and going through Processing adds parameter parsing and layer-store round trips on every
click. So both sides share the in-process functions instead, and nothing is duplicated: the algorithm and the
session build the query with `clay_core.similarity.combine_query` (via `layers.query_of` /
`SimilarityIndex.query`), score with `layers.score_query`, and select and write matches with
`layers.match_features`; only how the examples are picked (a click vs. parameters) differs.
"""

from __future__ import annotations

from qgis.core import QgsFeatureRequest, QgsGeometry, QgsPointXY, QgsRectangle, QgsVectorLayer
from qgis.gui import QgsMapTool
from qgis.PyQt.QtCore import Qt, pyqtSignal

from clay_core.errors import ClayInputError
from clay_qgis import layers


def role_for(modifiers) -> str:
    if modifiers & Qt.KeyboardModifier.ShiftModifier:
        return layers.POSITIVE
    if modifiers & Qt.KeyboardModifier.ControlModifier:
        return layers.NEGATIVE
    return "replace"


class FindSimilarMapTool(QgsMapTool):
    scored = pyqtSignal(object)  # the SimilaritySession after each click
    failed = pyqtSignal(str)  # a message for the user (no chip here, wrong layer ...)

    def __init__(self, canvas, layer_provider=None) -> None:
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)
        # Which layer to score: the dock/plugin gives the active layer; tests pass a fixed one.
        self._layer_provider = layer_provider
        self.sessions: dict[str, layers.SimilaritySession] = {}

    def target_layer(self) -> QgsVectorLayer | None:
        layer = self._layer_provider() if self._layer_provider else None
        return layer if isinstance(layer, QgsVectorLayer) and layer.customProperty(layers.PATH_PROPERTY) else None

    def session_for(self, layer: QgsVectorLayer) -> layers.SimilaritySession:
        session = self.sessions.get(layer.id())
        if session is None or session.layer is not layer:
            session = layers.SimilaritySession(layer)
            self.sessions[layer.id()] = session
        return session

    def canvasReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() != Qt.MouseButton.LeftButton:
            return
        layer = self.target_layer()
        if layer is None:
            self.failed.emit("select a layer of embeddings (Load embeddings / Embed raster layer) in the Layers panel")
            return
        try:
            self.click(layer, event.mapPoint(), role_for(event.modifiers()))
        except ClayInputError as exc:
            self.failed.emit(str(exc))

    def click(self, layer: QgsVectorLayer, map_point: QgsPointXY, role: str) -> layers.SimilaritySession:
        session = self.session_for(layer)
        fid = self.feature_at(layer, self.toLayerCoordinates(layer, map_point))
        if fid is None:
            raise ClayInputError("no chip under the cursor: click inside a chip of the layer")
        row = layers.row_of_feature(layer, session.embedding_set, fid)
        if row is None:
            raise ClayInputError("this feature has no embedding in the file (was the layer edited?)")
        session.add_example(row, role)
        self.scored.emit(session)
        return session

    def feature_at(self, layer: QgsVectorLayer, point: QgsPointXY) -> int | None:
        """The feature containing the point; with overlapping chips, the one whose centre is nearest."""
        # The filter box only narrows the candidates (spatial index); `contains` decides.
        tolerance = 1e-9 * max(1.0, abs(point.x()), abs(point.y()))
        box = QgsRectangle(point.x() - tolerance, point.y() - tolerance, point.x() + tolerance, point.y() + tolerance)
        request = QgsFeatureRequest().setFilterRect(box).setSubsetOfAttributes([])
        probe = QgsGeometry.fromPointXY(point)
        hits = [(feature.geometry().centroid().distance(probe), feature.id())
                for feature in layer.getFeatures(request) if feature.geometry().contains(probe)]
        return min(hits)[1] if hits else None
