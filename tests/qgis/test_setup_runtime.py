"""clay:setupruntime through processing.run: a real environment made in a temporary folder (torch==2.13.0 is the
CPU wheel pip finds on this machine), re-run (verify only), the setting it stores and clay:info using it, a plugin
upgrade (only clay_core re-installed), bad installer options, cancel, and the one-line error without a runtime."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from clay_qgis import runtime

TORCH = "torch==2.13.0"
SETTINGS_KEY = "clay/python"
RERUN_BOUND_S = 30.0  # a re-run only imports torch once (~2-5 s measured); generous for a loaded CI box


class Log:
    """A real QgsProcessingFeedback that keeps what the algorithm reports."""

    def __new__(cls, cancel_when: str | None = None):
        from qgis.core import QgsProcessingFeedback

        class Recording(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.lines: list[str] = []
                self.progress: list[float] = []

            def _keep(self, text):
                self.lines.append(text)
                if cancel_when and cancel_when in text:
                    self.cancel()

            def pushInfo(self, text):  # noqa: N802 - QGIS API
                self._keep(text)
                super().pushInfo(text)

            def pushConsoleInfo(self, text):  # noqa: N802 - QGIS API
                self._keep(text)
                super().pushConsoleInfo(text)

            def setProgressText(self, text):  # noqa: N802 - QGIS API
                self._keep(text)
                super().setProgressText(text)

            def setProgress(self, progress):  # noqa: N802 - QGIS API
                self.progress.append(progress)
                super().setProgress(progress)

        return Recording()


def run(parameters: dict, feedback=None) -> dict:
    import processing

    return processing.run("clay:setupruntime", parameters, feedback=feedback)


@pytest.fixture
def saved_setting(qgis_app):
    """The setting is restored afterwards: the repo-local test profile must not keep a temporary runtime."""
    from qgis.core import QgsSettings

    before = QgsSettings().value(SETTINGS_KEY, None)
    yield
    settings = QgsSettings()
    if before is None:
        settings.remove(SETTINGS_KEY)
    else:
        settings.setValue(SETTINGS_KEY, before)


@pytest.fixture(scope="module")
def installed_runtime(tmp_path_factory, qgis_processing_ready):
    """One full install for this module (a minute or two here): (folder, result, feedback, seconds)."""
    from qgis.core import QgsApplication, QgsSettings

    from clay_qgis.provider import ClayProvider

    registry = QgsApplication.processingRegistry()
    if registry.providerById("clay") is None:
        provider = ClayProvider()
        registry.addProvider(provider)
        installed_runtime.provider = provider  # keep the wrapper alive
    before = QgsSettings().value(SETTINGS_KEY, None)
    folder = tmp_path_factory.mktemp("runtime") / "clay-runtime"
    feedback = Log()
    started = time.monotonic()
    result = run({"FOLDER": str(folder), "TORCH": TORCH, "PIP_ARGS": ""}, feedback)
    seconds = time.monotonic() - started
    yield folder, result, feedback, seconds
    settings = QgsSettings()
    settings.remove(SETTINGS_KEY) if before is None else settings.setValue(SETTINGS_KEY, before)


@pytest.mark.slow
def test_setup_installs_verifies_and_stores_the_setting(installed_runtime, record_property):
    from qgis.core import QgsSettings

    folder, result, feedback, seconds = installed_runtime
    record_property("first_setup_s", round(seconds, 1))
    python = Path(result["PYTHON"])
    assert python == runtime.venv_python(folder) and python.is_file()
    assert QgsSettings().value(SETTINGS_KEY) == str(python)
    stamp = json.loads((folder / runtime.STAMP_NAME).read_text())
    assert stamp["torch"] == TORCH and stamp["clay_core_version"]
    text = "\n".join(feedback.lines)
    # each step streamed: the installer's own lines and the verification's report
    for expected in (
        "Creating the environment",
        "Installing torch==2.13.0",
        "Successfully installed",
        "Verifying the runtime",
        "torch: 2.13.0",
        "installed and verified",
    ):
        assert expected in text, expected
    assert feedback.progress == sorted(feedback.progress) and feedback.progress[-1] == 100
    # the runtime is isolated: no Debian packages leak in, clay_core is the installed copy (not the checkout)
    assert "include-system-site-packages = false" in (folder / "pyvenv.cfg").read_text()


@pytest.mark.slow
def test_second_run_only_verifies(installed_runtime, record_property):
    folder, first, _, _ = installed_runtime
    feedback = Log()
    started = time.monotonic()
    again = run({"FOLDER": str(folder), "TORCH": TORCH}, feedback)
    seconds = time.monotonic() - started
    record_property("second_setup_s", round(seconds, 1))
    assert again["PYTHON"] == first["PYTHON"]
    assert any("already set up; verified" in line for line in feedback.lines)
    assert not any("pip install" in line for line in feedback.lines)
    assert seconds < RERUN_BOUND_S


@pytest.mark.slow
def test_clay_info_uses_the_stored_runtime(installed_runtime, monkeypatch, saved_setting):
    import processing
    from qgis.core import QgsSettings

    _, result, _, _ = installed_runtime
    QgsSettings().setValue(SETTINGS_KEY, result["PYTHON"])
    monkeypatch.delenv("CLAY_PYTHON", raising=False)
    info = processing.run("clay:info", {"DEVICE": 0})
    assert result["PYTHON"] in info["PYTHON"]
    assert info["TORCH"].startswith("2.13.0")


@pytest.mark.slow
def test_bad_installer_options_are_one_line_and_leave_the_runtime_working(installed_runtime):
    from qgis.core import QgsProcessingException

    folder, result, _, _ = installed_runtime
    stamp_before = (folder / runtime.STAMP_NAME).read_text()
    with pytest.raises(QgsProcessingException) as failure:
        run({"FOLDER": str(folder), "TORCH": TORCH, "PIP_ARGS": "--no-such-option"})
    message = str(failure.value)
    assert "\n" not in message
    assert "no such option: --no-such-option" in message and "Set up Clay runtime again" in message
    assert (folder / runtime.STAMP_NAME).read_text() == stamp_before
    with pytest.raises(QgsProcessingException, match="cannot read the extra installer options"):
        run({"FOLDER": str(folder), "TORCH": TORCH, "PIP_ARGS": "--proxy 'unbalanced"})
    runtime.verify(Path(result["PYTHON"]), "", runtime.Feedback())  # still works


@pytest.mark.slow
def test_a_broken_runtime_is_repaired_by_running_again(installed_runtime):
    """clay_core deleted from the runtime (a half-removed folder, a botched manual pip call): the check fails, so
    the set-up installs again (torch is already there: pip only confirms it) instead of stopping."""
    import shutil

    folder, result, _, _ = installed_runtime
    site = next((folder / "lib").glob("python3*/site-packages"))
    shutil.rmtree(site / "clay_core")
    feedback = Log()
    repaired = runtime.setup_runtime(folder, TORCH, "", feedback)
    assert repaired.installed and repaired.steps == ["torch", "clay_core"]
    assert any("needs repair" in line for line in feedback.lines)
    assert (site / "clay_core" / "__init__.py").is_file()
    runtime.verify(Path(result["PYTHON"]), "", runtime.Feedback())


@pytest.mark.slow
def test_a_plugin_upgrade_reinstalls_clay_core_only(installed_runtime):
    """Same torch, other clay_core (the stamp's hash differs): clay_core is installed again, torch is not. TORCH
    left automatic keeps the torch installed before (offline here: the PyTorch index is never asked)."""
    folder, _, _, _ = installed_runtime
    current = runtime.bundled_clay_core()
    upgraded = runtime.ClayCorePackage(current.target, "0" * 64, current.version)
    feedback = Log()
    result = runtime.setup_runtime(folder, "", "", feedback, clay_core=upgraded)
    assert result.installed and result.steps == ["clay_core"]
    assert any("--force-reinstall" in line for line in feedback.lines)
    assert any("torch==2.13.0 (as installed before)" in line for line in feedback.lines)
    assert not any("download.pytorch.org" in line for line in feedback.lines)
    assert json.loads((folder / runtime.STAMP_NAME).read_text())["clay_core_sha256"] == "0" * 64


def test_cancel_during_setup_stops_the_installer_and_writes_no_stamp(clay_provider, tmp_path):
    from qgis.core import QgsProcessingException

    folder = tmp_path / "clay-runtime"
    feedback = Log(cancel_when="-m pip install")  # as soon as the first installer step starts
    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match="set-up cancelled .* run Set up Clay runtime again"):
        run({"FOLDER": str(folder), "TORCH": TORCH}, feedback)
    assert time.monotonic() - started < 120  # the environment itself was made (seconds), then the cancel
    assert not (folder / runtime.STAMP_NAME).exists()


def test_without_a_runtime_algorithms_fail_with_one_line_naming_the_setup(
    clay_provider, monkeypatch, saved_setting, tmp_path
):
    import processing
    from qgis.core import QgsProcessingException, QgsSettings

    from clay_qgis import worker

    monkeypatch.delenv("CLAY_PYTHON", raising=False)
    monkeypatch.setattr(worker, "_checkout_venv_python", lambda: None)  # as installed from the zip
    QgsSettings().remove(SETTINGS_KEY)
    heard: list[str] = []
    monkeypatch.setattr(worker, "runtime_missing_listeners", [heard.append])
    with pytest.raises(QgsProcessingException) as failure:
        processing.run("clay:info", {"DEVICE": 0})
    message = str(failure.value)
    assert "\n" not in message
    assert "no Clay runtime" in message and "clay:setupruntime" in message and "Set up Clay runtime" in message
    assert heard == [message]  # what the GUI's first-use prompt receives
    QgsSettings().setValue(SETTINGS_KEY, str(tmp_path / "gone" / "bin" / "python"))
    with pytest.raises(QgsProcessingException, match='Clay runtime .* is gone: run "Set up Clay runtime'):
        processing.run("clay:info", {"DEVICE": 0})
