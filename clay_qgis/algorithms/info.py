"""clay:info - versions, device and precision as the worker interpreter sees them."""

from __future__ import annotations

import json
from typing import Any

from osgeo import gdal
from qgis.core import Qgis, QgsProcessingOutputString

from clay_qgis.algorithms.base import ClayAlgorithm

REPORTED_FIELDS = (
    "clay_core",
    "torch",
    "qgis",
    "gdal",
    "proj",
    "device",
    "device_name",
    "precision",
    "threads",
    "python",
)


class InfoAlgorithm(ClayAlgorithm):
    algorithm_id = "info"
    display_name = "Diagnostics (versions, device, precision)"
    group_id = "tools"
    group_name = "Tools"
    help_text = (
        "Reports the clay_core, torch, QGIS, GDAL and PROJ versions, the device (CUDA GPU name and compute "
        "capability, or CPU and thread count) and the precision a run would use (bf16 on CUDA >= 8.0, fp32 on "
        "CPU). Runs in the configured worker interpreter, so it also checks that torch is installed there."
    )

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.add_device_parameter()
        for field in REPORTED_FIELDS:
            self.addOutput(QgsProcessingOutputString(field.upper(), field))
        self.addOutput(QgsProcessingOutputString("QGIS_GDAL", "GDAL inside QGIS"))
        self.addOutput(QgsProcessingOutputString("REPORT", "full report (JSON)"))

    def command(self, parameters, context, feedback) -> list[str]:
        return ["info", "--device", self.device_value(parameters, context)]

    def load_results(self, result, parameters, context, feedback) -> dict[str, Any]:
        report = dict(result)
        report["qgis"] = Qgis.QGIS_VERSION
        report["qgis_gdal"] = gdal.__version__
        for key, value in report.items():
            feedback.pushInfo(f"{key}: {value}")
        outputs = {field.upper(): str(report.get(field)) for field in REPORTED_FIELDS}
        outputs["QGIS_GDAL"] = report["qgis_gdal"]
        outputs["REPORT"] = json.dumps(report)
        return outputs
