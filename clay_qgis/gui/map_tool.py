"""The find-similar map tool: click a chip -> every chip of every embeddings layer is scored and styled.

Plain click: a new query. Shift-click: add a positive example. Ctrl-click: add a negative example. The click
may land on any embeddings layer of the project (several tiles of one model are one search, see
clay_qgis.session); works on chips and on exploded patches.

Why this calls `session.SearchSession` and not the `clay:similarity` algorithm (DESIGN says GUI parts call
the Processing algorithms): a click must restyle the layers the user is looking at, in place, in well under a
second. `clay:similarity` writes a new output layer per run (a new layer per click, loaded through Processing's
post-processing), and going through Processing adds parameter parsing and layer-store round trips on every
click. So both sides share the in-process functions instead, and nothing is duplicated: the algorithm and the
session build the direction with `clay_core.similarity` (`SimilarityIndex.direction_of`, centred on the joint
mean of the files searched), score with `session.score_query` and classify with `clay_core.classify`; only how
the examples are picked (a click vs. parameters) differs.
"""

from __future__ import annotations

from qgis.core import QgsFeatureRequest, QgsGeometry, QgsPointXY, QgsRectangle, QgsVectorLayer
from qgis.gui import QgsMapTool
from qgis.PyQt.QtCore import Qt, pyqtSignal

from clay_core.errors import ClayInputError
from clay_qgis import layers
from clay_qgis.schema import NEGATIVE, POSITIVE
from clay_qgis.session import SearchSession, embedding_layers


def role_for(modifiers) -> str:
    if modifiers & Qt.KeyboardModifier.ShiftModifier:
        return POSITIVE
    if modifiers & Qt.KeyboardModifier.ControlModifier:
        return NEGATIVE
    return "replace"


class FindSimilarMapTool(QgsMapTool):
    scored = pyqtSignal(object)  # the SearchSession after each click
    failed = pyqtSignal(str)  # a message for the user (no chip here, wrong layer ...)

    def __init__(self, canvas, layer_provider=None) -> None:
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)
        # Which layer to try first: the dock/plugin gives the active layer; tests pass a fixed one.
        self._layer_provider = layer_provider
        self.session: SearchSession | None = None
        self.mode = "similar"  # or "classifier" (the dock's switch), kept for new sessions

    @property
    def sessions(self) -> dict[str, SearchSession]:
        return {self.session.layer.id(): self.session} if self.session is not None else {}

    def target_layer(self) -> QgsVectorLayer | None:
        layer = self._layer_provider() if self._layer_provider else None
        return layer if isinstance(layer, QgsVectorLayer) and layer.customProperty(layers.PATH_PROPERTY) else None

    def candidate_layers(self) -> list[QgsVectorLayer]:
        """The active embeddings layer first, then every other embeddings layer of the project."""
        first = self.target_layer()
        others = [layer for layer in embedding_layers() if layer is not first]
        return ([first] if first is not None else []) + others

    def session_for(self, layer: QgsVectorLayer, embedding_set) -> SearchSession:
        """The one search: kept while the clicked layer has the same model dimension, else a new one."""
        session = self.session
        if session is None or session.embedding_set.dim != embedding_set.dim:
            session = SearchSession(layer)
            session.mode = self.mode
            self.session = session
        return session

    def canvasReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() != Qt.MouseButton.LeftButton:
            return
        candidates = self.candidate_layers()
        if not candidates:
            self.failed.emit("load a layer of embeddings first (Load embeddings / Embed raster layer)")
            return
        try:
            self.click_any(candidates, event.mapPoint(), role_for(event.modifiers()))
        except ClayInputError as exc:
            self.failed.emit(str(exc))

    def click_any(self, candidates: list[QgsVectorLayer], map_point: QgsPointXY, role: str) -> SearchSession:
        """The click on the first candidate layer that has a chip under the point."""
        for layer in candidates:
            fid = self.feature_at(layer, self.toLayerCoordinates(layer, map_point))
            if fid is not None:
                return self.click_feature(layer, fid, role)
        raise ClayInputError("no chip under the cursor: click inside a chip of an embeddings layer")

    def click(self, layer: QgsVectorLayer, map_point: QgsPointXY, role: str) -> SearchSession:
        """A click on one given layer (no other layer is tried)."""
        fid = self.feature_at(layer, self.toLayerCoordinates(layer, map_point))
        if fid is None:
            raise ClayInputError("no chip under the cursor: click inside a chip of the layer")
        return self.click_feature(layer, fid, role)

    def click_feature(self, layer: QgsVectorLayer, fid: int, role: str) -> SearchSession:
        """The chip (feature `fid`) of `layer` as a new query or as one more example."""
        embedding_set = layers.embedding_set_of(layer)
        if embedding_set is None:
            raise ClayInputError(f"layer {layer.name()!r} was not loaded from an embeddings file")
        session = self.session_for(layer, embedding_set)
        row = layers.row_of_feature(layer, embedding_set, fid)
        if row is None:
            raise ClayInputError("this feature has no embedding in the file (was the layer edited?)")
        if role == "replace":
            session.layer, session.embedding_set = layer, embedding_set  # the dock follows the clicked tile
        session.add_example(row, role, layer)
        self.scored.emit(session)
        return session

    def feature_at(self, layer: QgsVectorLayer, point: QgsPointXY) -> int | None:
        """The feature containing the point; with overlapping chips, the one whose centre is nearest."""
        # The filter box only narrows the candidates (spatial index); `contains` decides.
        tolerance = 1e-9 * max(1.0, abs(point.x()), abs(point.y()))
        box = QgsRectangle(point.x() - tolerance, point.y() - tolerance, point.x() + tolerance, point.y() + tolerance)
        request = QgsFeatureRequest().setFilterRect(box).setSubsetOfAttributes([])
        probe = QgsGeometry.fromPointXY(point)
        hits = [
            (feature.geometry().centroid().distance(probe), feature.id())
            for feature in layer.getFeatures(request)
            if feature.geometry().contains(probe)
        ]
        return min(hits)[1] if hits else None
