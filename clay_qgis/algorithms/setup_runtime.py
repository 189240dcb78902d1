"""clay:setupruntime - create (or check) the Python environment with torch and clay_core that the worker uses."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
    QgsSettings,
)

from clay_qgis import runtime
from clay_qgis.algorithms.base import ClayAlgorithm
from clay_qgis.worker import SETTINGS_KEY


def default_runtime_folder() -> str:
    """Inside the active QGIS profile: writable without admin rights, removed with the profile."""
    return str(Path(QgsApplication.qgisSettingsDirPath()) / "clay-runtime")


def plugin_version() -> str:
    for candidate in (runtime.PLUGIN_DIR / "metadata.txt", runtime.PLUGIN_DIR.parent / "metadata.txt"):
        if candidate.is_file():
            parser = configparser.ConfigParser()
            parser.read(candidate, encoding="utf-8")
            return parser.get("general", "version", fallback="")
    return ""


def store_python_setting(python: str) -> None:
    settings = QgsSettings()
    settings.setValue(SETTINGS_KEY, python)
    settings.sync()  # qgis_process exits right after: the next run must see it


class SetupRuntimeAlgorithm(ClayAlgorithm):
    algorithm_id = "setupruntime"
    display_name = "Set up Clay runtime"
    group_id = "tools"
    group_name = "Tools"
    help_text = (
        "Creates the Python environment that embedding, training and diagnostics run in: a virtual environment "
        "with PyTorch and the clay_core bundled in this plugin, in a folder of your QGIS profile (no admin rights "
        "needed). torch: left empty, a CUDA build matching your NVIDIA driver is chosen when nvidia-smi finds a GPU, "
        "the CPU build otherwise; or give a requirement such as torch==2.5.1. Installer options (an offline mirror "
        "--index-url URL, --find-links FOLDER, --proxy URL, ...) go into 'Extra installer options'. Running it again "
        "only checks the runtime (seconds), or updates it after a plugin upgrade. The runtime's Python is stored in "
        f"the QGIS setting '{SETTINGS_KEY}'; delete the folder to remove it."
    )

    FOLDER = "FOLDER"
    TORCH = "TORCH"
    PIP_ARGS = "PIP_ARGS"
    PYTHON = "PYTHON"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFile(
                self.FOLDER,
                "Runtime folder",
                behavior=QgsProcessingParameterFile.Behavior.Folder,
                defaultValue=default_runtime_folder(),
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.TORCH,
                "torch requirement (empty = automatic: CUDA build for an NVIDIA GPU, CPU build otherwise)",
                defaultValue="",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.PIP_ARGS,
                "Extra installer options (e.g. --index-url URL, --find-links FOLDER, --proxy URL)",
                defaultValue="",
                optional=True,
            )
        )
        self.addOutput(QgsProcessingOutputString(self.PYTHON, "Runtime Python"))

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        folder = self.parameterAsString(parameters, self.FOLDER, context).strip() or default_runtime_folder()
        torch = self.parameterAsString(parameters, self.TORCH, context)
        pip_args = self.parameterAsString(parameters, self.PIP_ARGS, context)
        try:
            result = runtime.setup_runtime(Path(folder), torch, pip_args, feedback, plugin_version())
        except ValueError as exc:  # shlex: an unbalanced quote in PIP_ARGS
            raise QgsProcessingException(
                f"cannot read the extra installer options ({exc}): fix PIP_ARGS, {runtime.RERUN}"
            ) from exc
        except runtime.RuntimeSetupError as exc:
            raise QgsProcessingException(str(exc)) from exc
        store_python_setting(result.python)
        what = "installed and verified" if result.installed else "already set up; verified"
        feedback.pushInfo(
            f"Clay runtime {what} in {result.seconds:.0f} s: {result.python} (torch "
            f"{result.report.get('torch')}, device {result.report.get('device')}); stored in the "
            f"QGIS setting '{SETTINGS_KEY}'"
        )
        return {self.PYTHON: result.python}
