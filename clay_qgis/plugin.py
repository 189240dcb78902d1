"""The plugin object QGIS holds: registers the Processing provider and the GUI entry points."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QAction

from clay_qgis.provider import ClayProvider, plugin_icon

MENU = "&Clay embeddings"


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
        self._add_action("Clay diagnostics…", self.show_diagnostics, "Show versions, device and precision")
        self._add_action("Embed raster layer…", lambda: self._open_algorithm("clay:embed"),
                         "Embed the raster under the canvas with Clay", toolbar=True)

    def _add_action(self, text: str, callback, tip: str, toolbar: bool = False) -> QAction:
        action = QAction(plugin_icon(), text, self.iface.mainWindow())
        action.setToolTip(tip)
        action.triggered.connect(callback)
        self.iface.addPluginToMenu(MENU, action)
        if toolbar:
            self.iface.addToolBarIcon(action)
        self.actions.append(action)
        return action

    def _open_algorithm(self, algorithm_id: str) -> None:
        from processing import execAlgorithmDialog

        if QgsApplication.processingRegistry().algorithmById(algorithm_id) is None:
            self.iface.messageBar().pushWarning("Clay", f"{algorithm_id} is not available in this version")
            return
        execAlgorithmDialog(algorithm_id, {})

    def show_diagnostics(self) -> None:
        from processing import execAlgorithmDialog

        execAlgorithmDialog("clay:info", {})

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
        self.actions.clear()
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
