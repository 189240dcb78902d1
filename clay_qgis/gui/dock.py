"""The similarity dock: what is loaded (model, level, device/precision), threshold, top-k, clear, export and a
small histogram of the scores. It drives the same clay_qgis.session.SearchSession the map tool fills (see
map_tool.py for why that session, not the clay:similarity algorithm, serves interactive use). "Export matches"
writes the rows every searched layer shows (SearchSession.export_matches), best first; re-running the algorithm
could not express patch-level examples clicked on the map."""

from __future__ import annotations

import numpy as np
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import QRectF, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QColor, QPainter, QPen
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from clay_qgis import style
from clay_qgis.schema import SIMILARITY
from clay_qgis.session import CLASSIFIER, SIMILAR, SearchSession
from clay_qgis.vector_cache import EmbeddingSet

HISTOGRAM_BINS = 40
SLIDER_STEPS = 1000


class ScoreHistogram(QWidget):
    """Bars of the score distribution between the lowest and the highest score (cosine scores of one model often
    sit in a narrow band, so a fixed [-1, 1] axis would show one bar); bars below the threshold are grey."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self.edges = np.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1)
        self.threshold: float | None = None
        self.setMinimumHeight(80)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_scores(self, scores: np.ndarray | None, threshold: float | None) -> None:
        if scores is None or not len(scores):
            self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
            self.edges = np.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1)
        else:
            low, high = float(np.min(scores)), float(np.max(scores))
            if high - low < 1e-6:
                low, high = low - 0.01, high + 0.01
            self.counts, self.edges = np.histogram(scores, bins=HISTOGRAM_BINS, range=(low, high))
        self.threshold = threshold
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        width, height = self.width(), self.height() - 16
        painter.fillRect(self.rect(), QColor("#ffffff"))
        peak = max(1, int(self.counts.max()))
        bar = width / HISTOGRAM_BINS
        low, high = float(self.edges[0]), float(self.edges[-1])
        for index, count in enumerate(self.counts.tolist()):
            above = self.threshold is None or self.edges[index + 1] > self.threshold
            painter.fillRect(
                QRectF(index * bar, height * (1 - count / peak), max(1.0, bar - 1), height * count / peak),
                QColor(style.VIRIDIS[6] if above else "#bdbdbd"),
            )
        painter.setPen(QPen(QColor("#444444")))
        painter.drawText(2, height + 13, f"{low:.2f}")
        painter.drawText(width - 34, height + 13, f"{high:.2f}")
        if self.threshold is not None and low <= self.threshold <= high:
            x = (self.threshold - low) / (high - low) * width
            painter.setPen(QPen(QColor(style.TOP_K_COLOR), 2))
            painter.drawLine(int(x), 0, int(x), height)
        painter.end()


def keep_legend_expanded(layer) -> None:
    """Re-open the layer's legend in the Layers panel after a restyle. Every restyle rebuilds the layer's
    legend nodes, and QGIS 3.22's layer tree view then shows the layer collapsed although its tree node is
    still marked expanded (the view restores expansion of re-inserted rows only for legend trees). Deferred
    to the event loop so it runs after the model rebuilt the nodes; a layer the user collapsed stays so."""
    from qgis.core import QgsProject
    from qgis.utils import iface

    if iface is None or layer is None:  # headless (tests, qgis_process): no Layers panel
        return
    layer_id = layer.id()

    def expand() -> None:
        view = iface.layerTreeView()
        node = QgsProject.instance().layerTreeRoot().findLayer(layer_id)
        if view is None or node is None or not node.isExpanded():
            return
        index = view.node2index(node) if hasattr(view, "node2index") else view.layerTreeModel().node2index(node)
        if index.isValid():
            view.setExpanded(index, True)

    # Twice: the first pass runs once the model rebuilt the legend nodes; QGIS 3.22 sometimes rebuilds them again
    # a moment later (a layer whose fields just changed, several restyles in one turn), collapsing the view anew.
    QTimer.singleShot(0, expand)
    QTimer.singleShot(300, expand)


class SimilarityDock(QgsDockWidget):
    """Threshold slider, top-k, clear, export matches and the histogram for the session the map tool fills."""

    activate_tool = pyqtSignal()
    setup_runtime = pyqtSignal()

    def __init__(self, parent=None) -> None:
        super().__init__("Clay: find similar", parent)
        self.setObjectName("ClaySimilarityDock")
        self.session: SearchSession | None = None
        body = QWidget(self)
        column = QVBoxLayout(body)
        self.layer_label = QLabel("No embeddings layer yet: load one, then click a chip with the find-similar tool.")
        self.layer_label.setWordWrap(True)
        self.device_label = QLabel("Device: not checked yet")
        self.device_label.setWordWrap(True)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.tool_button = QPushButton("Find similar: click a chip")
        self.tool_button.clicked.connect(self.activate_tool.emit)
        self.setup_button = QPushButton("Set up Clay runtime…")
        self.setup_button.setToolTip("Create or check the Python environment with PyTorch that embedding runs in")
        self.setup_button.clicked.connect(self.setup_runtime.emit)
        form = QFormLayout()
        self.use_threshold = QCheckBox("Hide below")
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        # The slider spans the current scores (min..max) in SLIDER_STEPS steps: scores of one model often sit in
        # a narrow band (e.g. 0.95-1.00) that a fixed [-1, 1] slider could not resolve.
        self.threshold_slider.setRange(0, SLIDER_STEPS)
        self.threshold_slider.setValue(SLIDER_STEPS // 2)
        self.score_range = (-1.0, 1.0)
        self.threshold_value = QLabel("0.000")
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(self.use_threshold)
        threshold_row.addWidget(self.threshold_slider, 1)
        threshold_row.addWidget(self.threshold_value)
        form.addRow("Threshold", threshold_row)
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 100000)
        self.top_k.setValue(10)
        self.top_k.setSpecialValueText("none")
        form.addRow("Outline top k", self.top_k)
        # Labels -> classifier: shift/ctrl-clicks become positive/negative labels, and every new label refits
        # the logistic regression (milliseconds) and recolours every chip by its probability.
        self.classifier_box = QCheckBox("Classifier: probability from the labels (refits on every click)")
        self.classifier_box.setToolTip(
            "Shift-click chips like the ones you want, ctrl-click chips unlike them: a "
            "logistic regression on their embeddings gives every chip a probability"
        )
        self.histogram = ScoreHistogram()
        buttons = QHBoxLayout()
        self.clear_button = QPushButton("Clear")
        self.export_button = QPushButton("Export matches…")
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.export_button)
        for widget in (self.layer_label, self.device_label, self.setup_button, self.tool_button):
            column.addWidget(widget)
        column.addLayout(form)
        column.addWidget(self.classifier_box)
        self.histogram_label = QLabel("Scores (shift-click: add positive, ctrl-click: add negative)")
        column.addWidget(self.histogram_label)
        column.addWidget(self.histogram)
        column.addLayout(buttons)
        column.addWidget(self.status_label)
        column.addStretch(1)
        self.setWidget(body)
        self.threshold_slider.valueChanged.connect(self._threshold_changed)
        self.use_threshold.toggled.connect(self._threshold_changed)
        self.top_k.valueChanged.connect(self._top_k_changed)
        self.classifier_box.toggled.connect(self._mode_changed)
        self.clear_button.clicked.connect(self.clear)
        self.export_button.clicked.connect(self.ask_export)

    # -- state from the map tool -------------------------------------------------------------------
    def slider_value(self) -> float:
        low, high = self.score_range
        return low + (high - low) * self.threshold_slider.value() / SLIDER_STEPS

    def threshold(self) -> float | None:
        return self.slider_value() if self.use_threshold.isChecked() else None

    def mode(self) -> str:
        return CLASSIFIER if self.classifier_box.isChecked() else SIMILAR

    def show_session(self, session: SearchSession) -> None:
        """Called after every click: adopt the dock's mode, threshold and top-k and show the new scores."""
        first = self.session is not session
        self.session = session
        if session.mode != self.mode():
            session.set_mode(self.mode())
        scores = self._scores()
        if scores is not None and len(scores):
            self.score_range = (float(scores.min()), float(scores.max()))
            self.threshold_value.setText(f"{self.slider_value():.3f}")
        if first or session.threshold != self.threshold() or session.top_k != self.top_k.value():
            session.set_view(threshold=self.threshold(), top_k=self.top_k.value(), clear_threshold=True)
        embedding_set = session.embedding_set
        others = len(session.members) - 1
        more = f"<br>searched together with {others} more layer(s) of this model" if others > 0 else ""
        self.layer_label.setText(f"<b>{session.layer.name()}</b><br>{embedding_set.describe()}{more}")
        self._refresh()

    def _scores(self):
        """Every searched layer's scores (or probabilities) when the session has several layers."""
        session = self.session
        if session is None or session.scored is None:
            return None
        return session.all_scores if session.all_scores is not None else session.scored.scores

    def show_layer(self, embedding_set: EmbeddingSet | None) -> None:
        if embedding_set is not None:
            self.layer_label.setText(embedding_set.describe())

    def show_device(self, report: dict) -> None:
        self.device_label.setText(
            f"Device: {report.get('device_name') or report.get('device')} · precision "
            f"{report.get('precision')} · torch {report.get('torch')}"
        )

    def show_message(self, text: str) -> None:
        self.status_label.setText(text)

    def _refresh(self) -> None:
        session = self.session
        if session is not None:
            for layer in [member.layer for member in session.members] or [session.layer]:
                keep_legend_expanded(layer)
        scores = self._scores()
        self.histogram.set_scores(scores, self.threshold())
        field = session.score_field if session else SIMILARITY
        self.histogram_label.setText(
            f"{'Probabilities' if field != SIMILARITY else 'Scores'} "
            "(shift-click: add positive, ctrl-click: add negative)"
        )
        if session and session.scored is not None:
            matches = len(session.match_rows())
            positives, negatives = session.counts()
            message = session.message
            self.status_label.setText(
                f"{positives} positive, {negatives} negative example(s); {matches} match(es) "
                "shown as top k / above the threshold" + (f"; {message}" if message else "")
            )
        else:
            self.status_label.setText("")

    # -- controls ----------------------------------------------------------------------------------
    def _threshold_changed(self, *_args) -> None:
        self.threshold_value.setText(f"{self.slider_value():.3f}")
        if self.session is not None:
            self.session.set_view(threshold=self.threshold(), clear_threshold=True)
        self._refresh()

    def _mode_changed(self, *_args) -> None:
        if self.session is not None and hasattr(self.session, "set_mode"):
            self.session.set_mode(self.mode())
            scores = self._scores()
            if scores is not None and len(scores):
                self.score_range = (float(scores.min()), float(scores.max()))
                self.session.set_view(threshold=self.threshold(), clear_threshold=True)
        self._refresh()

    def _top_k_changed(self, value: int) -> None:
        if self.session is not None:
            self.session.set_view(top_k=value)
        self._refresh()

    def clear(self) -> None:
        if self.session is not None:
            self.session.clear()
        self._refresh()

    def ask_export(self) -> None:
        if self.session is None or self.session.scored is None:
            self.show_message("Nothing to export yet: click a chip first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export matches", "matches.gpkg", "GeoPackage (*.gpkg)")
        if path:
            self.export(path)

    def export(self, path: str) -> int:
        if self.session is None:
            self.show_message("Nothing to export yet: click a chip first.")
            return 0
        count = self.session.export_matches(path)
        self.show_message(f"exported {count} match(es) to {path}")
        return count
