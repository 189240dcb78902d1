"""Shared base of every clay algorithm: naming, help, common parameters, running the worker."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterEnum,
)

from clay_qgis.worker import WorkerError, run_clay

DEVICE_OPTIONS = ["auto", "cpu", "cuda"]


class ClayAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set the class attributes and implement initAlgorithm/processAlgorithm."""

    algorithm_id = ""  # without the provider prefix, e.g. "embed"
    display_name = ""
    group_id = "embeddings"
    group_name = "Embeddings"
    help_text = ""

    def name(self) -> str:
        return self.algorithm_id

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.display_name

    def group(self) -> str:
        return self.group_name

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return self.group_id

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.help_text

    def createInstance(self) -> ClayAlgorithm:  # noqa: N802 - QGIS API
        return type(self)()

    # -- shared parameters -------------------------------------------------------------------------
    DEVICE = "DEVICE"

    def add_device_parameter(self) -> None:
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=DEVICE_OPTIONS, defaultValue=0))

    def device_value(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        return DEVICE_OPTIONS[self.parameterAsEnum(parameters, self.DEVICE, context)]

    # -- running clay_core out of process ----------------------------------------------------------
    def run_worker(self, arguments: list[str], feedback: QgsProcessingFeedback) -> dict[str, Any]:
        """Run `python -m clay_core ARGS --progress json` and return its result; errors become
        QgsProcessingException with the worker's own last error line."""
        try:
            return run_clay(arguments, feedback)
        except WorkerError as exc:
            raise QgsProcessingException(str(exc)) from exc
