"""The plugin object QGIS holds: registers the Processing provider and the GUI entry points."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QAction

from clay_qgis.provider import ClayProvider, plugin_icon

if TYPE_CHECKING:  # the widgets are imported when first used, so loading the plugin stays light
    from clay_qgis.gui.dock import SimilarityDock
    from clay_qgis.gui.map_tool import FindSimilarMapTool

MENU = "&Clay embeddings"
# clay:info starts torch and probes the device: seconds normally, a minute on a cold disk. A worker that hangs
# (a stuck GPU driver) is stopped after this, so the dock says "unavailable" instead of waiting forever.
DEVICE_CHECK_TIMEOUT_S = 120.0


class ClayPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: ClayProvider | None = None
        self.actions: list[QAction] = []

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        # Called by QGIS (and by qgis_process, which never calls initGui) when the plugin loads.
        self.provider = ClayProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()
        self._add_action(
            "Set up Clay runtime…",
            self.open_setup_runtime,
            "Create or check the Python environment with PyTorch that embedding runs in",
        )
        self._add_action("Clay diagnostics…", self.show_diagnostics, "Show versions, device and precision")
        self._watch_missing_runtime()
        self._add_action(
            "Embed raster layer…", self.open_embed_dialog, "Embed the raster under the canvas with Clay", toolbar=True
        )
        self._add_action(
            "Load embeddings…",
            lambda: self._open_algorithm("clay:loadembeddings"),
            "Show an embeddings GeoParquet file as a layer",
        )
        self.find_similar_action = self._add_action(
            "Find similar (click a chip)",
            self.activate_find_similar,
            "Click a chip of an embeddings layer: similar chips light up (shift: add, ctrl: exclude)",
            toolbar=True,
        )
        self.find_similar_action.setCheckable(True)
        self.map_tool: FindSimilarMapTool | None = None
        self.dock: SimilarityDock | None = None

    # -- the Clay runtime ---------------------------------------------------------------------------
    def _watch_missing_runtime(self) -> None:
        """First use: an algorithm that finds no runtime fails with one line; here QGIS also offers the set-up."""
        from clay_qgis import worker
        from clay_qgis.gui.setup_prompt import RuntimePrompter

        self.prompter = RuntimePrompter(self.iface.mainWindow(), self.open_setup_runtime)
        worker.runtime_missing_listeners.append(self.prompter.notify)

    def open_setup_runtime(self, *_checked) -> None:
        """The clay:setupruntime dialog (progress and log as for any algorithm); afterwards the dock shows the
        device the new runtime sees."""
        self._open_algorithm("clay:setupruntime")
        if self.dock is not None:
            self.check_device()

    # -- find similar: map tool + dock -------------------------------------------------------------
    def ensure_dock(self):
        from qgis.PyQt.QtCore import Qt

        from clay_qgis.gui.dock import SimilarityDock

        if self.dock is None:
            self.dock = SimilarityDock(self.iface.mainWindow())
            self.dock.activate_tool.connect(self.activate_find_similar)
            self.dock.setup_runtime.connect(self.open_setup_runtime)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            self.check_device()
        self.dock.show()
        return self.dock

    def activate_find_similar(self, *_checked) -> None:
        from clay_qgis.gui.map_tool import FindSimilarMapTool

        dock = self.ensure_dock()
        canvas = self.iface.mapCanvas()
        if self.map_tool is None:
            self.map_tool = FindSimilarMapTool(canvas, self.iface.activeLayer)
            self.map_tool.setAction(self.find_similar_action)
            self.map_tool.scored.connect(dock.show_session)
            self.map_tool.failed.connect(lambda text: self.iface.messageBar().pushWarning("Clay", text))
        canvas.setMapTool(self.map_tool)
        self.find_similar_action.setChecked(True)
        from clay_qgis import layers

        layer = self.iface.activeLayer()
        if layer is not None and layer.customProperty(layers.PATH_PROPERTY):
            dock.show_layer(layers.embedding_set_of(layer))

    def check_device(self) -> None:
        """Device and precision of the worker interpreter, shown in the dock before any run (clay:info runs in
        a background task: starting torch takes seconds)."""
        from qgis.core import QgsApplication, QgsTask

        from clay_qgis.worker import WorkerError, run_clay

        def collect(task):
            try:
                return run_clay(["info"], timeout_s=DEVICE_CHECK_TIMEOUT_S)
            except WorkerError as exc:
                return {"device": f"unavailable ({exc})", "precision": "?", "torch": "?"}

        def finished(exception, report=None):
            if self.dock is not None and report:
                self.dock.show_device(report)

        self._info_task = QgsTask.fromFunction("Clay: check device", collect, on_finished=finished)
        QgsApplication.taskManager().addTask(self._info_task)

    def open_embed_dialog(self, *_checked) -> None:
        """clay:embed with the canvas extent (in the project CRS) and the active raster layer filled in."""
        from qgis.core import QgsRasterLayer

        canvas = self.iface.mapCanvas()
        extent, crs = canvas.extent(), canvas.mapSettings().destinationCrs()
        parameters: dict[str, object] = {
            "EXTENT": f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},"
            f"{extent.yMaximum()} [{crs.authid()}]"
        }
        if isinstance(self.iface.activeLayer(), QgsRasterLayer):
            parameters["INPUT"] = [self.iface.activeLayer().id()]
        self._open_algorithm("clay:embed", parameters)

    def _add_action(self, text: str, callback, tip: str, toolbar: bool = False) -> QAction:
        action = QAction(plugin_icon(), text, self.iface.mainWindow())
        action.setToolTip(tip)
        action.triggered.connect(callback)
        self.iface.addPluginToMenu(MENU, action)
        if toolbar:
            self.iface.addToolBarIcon(action)
        self.actions.append(action)
        return action

    def _open_algorithm(self, algorithm_id: str, parameters: dict | None = None) -> None:
        from processing import execAlgorithmDialog

        if QgsApplication.processingRegistry().algorithmById(algorithm_id) is None:
            self.iface.messageBar().pushWarning("Clay", f"{algorithm_id} is not available in this version")
            return
        execAlgorithmDialog(algorithm_id, parameters or {})

    def show_diagnostics(self) -> None:
        from processing import execAlgorithmDialog

        execAlgorithmDialog("clay:info", {})

    def unload(self) -> None:
        from clay_qgis import worker

        prompter = getattr(self, "prompter", None)
        if prompter is not None and prompter.notify in worker.runtime_missing_listeners:
            worker.runtime_missing_listeners.remove(prompter.notify)
        if getattr(self, "map_tool", None) is not None:
            self.iface.mapCanvas().unsetMapTool(self.map_tool)
            self.map_tool = None
        dock = getattr(self, "dock", None)
        if dock is not None:
            self.iface.removeDockWidget(dock)
            dock.deleteLater()
            self.dock = None
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
        self.actions.clear()
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
