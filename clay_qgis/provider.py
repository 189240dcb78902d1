"""The Processing provider `clay`: the plugin's API (toolbox, qgis_process, the dock all use it)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from clay_qgis.algorithms import all_algorithms

ICON_PATH = Path(__file__).resolve().parent / "icons" / "clay.svg"


def plugin_icon() -> QIcon:
    # By file path: works in Qt5 and Qt6 alike and needs no compiled resources (pyrcc5 does not exist for Qt6).
    return QIcon(str(ICON_PATH))


class ClayProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "clay"

    def name(self) -> str:
        return "Clay"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        return "Clay foundation-model embeddings"

    def icon(self) -> QIcon:
        return plugin_icon()

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        for algorithm in all_algorithms():
            self.addAlgorithm(algorithm)
