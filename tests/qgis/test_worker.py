"""clay_qgis.worker's timeout and its use by the plugin's background device check."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest


@pytest.fixture
def hanging_python(tmp_path: Path, monkeypatch) -> Path:
    """A "worker Python" that never answers (a hung GPU driver, a stuck import)."""
    script = tmp_path / "hanging-python"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CLAY_PYTHON", str(script))
    return script


def test_a_hung_worker_is_stopped_after_the_timeout(hanging_python):
    from qgis.core import QgsProcessingFeedback

    from clay_qgis.worker import WorkerError, run_clay

    class Pid(QgsProcessingFeedback):
        pid = None

        def pushDebugInfo(self, text):  # noqa: N802 - QGIS API
            match = re.search(r"worker \(pid (\d+)\)", text)
            self.pid = int(match.group(1)) if match else self.pid

    feedback = Pid()
    started = time.monotonic()
    with pytest.raises(WorkerError, match="did not finish within 1 s"):
        run_clay(["info"], feedback, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 10.0, f"took {elapsed:.1f} s"
    with pytest.raises(ProcessLookupError):
        os.killpg(feedback.pid, 0)  # the hung worker's whole process group is gone


def test_the_plugin_device_check_runs_clay_info_with_a_timeout(qgis_app, monkeypatch):
    from qgis.core import QgsTask

    from clay_qgis import plugin, worker

    calls = []

    def fake_run_clay(arguments, feedback=None, timeout_s=None):
        calls.append((arguments, timeout_s))
        return {"device": "cpu", "precision": "fp32", "torch": "x"}

    monkeypatch.setattr(worker, "run_clay", fake_run_clay)
    clay_plugin = plugin.ClayPlugin(iface=None)
    clay_plugin.dock = None
    clay_plugin.check_device()
    task = clay_plugin._info_task
    deadline = time.monotonic() + 30
    while task.status() not in (QgsTask.TaskStatus.Complete, QgsTask.TaskStatus.Terminated):
        assert time.monotonic() < deadline, "the device check task never finished"
        qgis_app.processEvents()
        time.sleep(0.01)
    assert calls == [(["info"], plugin.DEVICE_CHECK_TIMEOUT_S)]


def test_worker_python_order_env_then_setting_then_checkout_venv(qgis_app, tmp_path: Path, monkeypatch):
    from qgis.core import QgsSettings

    from clay_qgis import worker

    settings = QgsSettings()
    before = settings.value(worker.SETTINGS_KEY, None)
    configured = tmp_path / "runtime" / "bin" / "python"
    configured.parent.mkdir(parents=True)
    configured.write_text("#!/bin/sh\n")
    configured.chmod(0o755)
    try:
        settings.setValue(worker.SETTINGS_KEY, str(configured))
        monkeypatch.setenv("CLAY_PYTHON", "/usr/bin/python3")
        assert worker.worker_python() == "/usr/bin/python3"
        monkeypatch.delenv("CLAY_PYTHON")
        assert worker.worker_python() == str(configured)
        settings.remove(worker.SETTINGS_KEY)
        checkout_venv = worker._checkout_venv_python()
        assert checkout_venv is not None  # this checkout's .venv: a developer convenience only
        assert worker.worker_python() == str(checkout_venv)
    finally:
        settings.remove(worker.SETTINGS_KEY) if before is None else settings.setValue(worker.SETTINGS_KEY, before)


def test_a_managed_runtime_gets_no_pythonpath_from_qgis(tmp_path: Path, monkeypatch):
    """The runtime has the plugin's clay_core installed; QGIS's PYTHONPATH (its own packages) must not leak in."""
    from clay_qgis import runtime, worker

    python = runtime.venv_python(tmp_path)
    python.parent.mkdir(parents=True)
    python.write_text("")
    monkeypatch.setenv("PYTHONPATH", "/usr/share/qgis/python")
    monkeypatch.setenv("PROJ_DATA", "/usr/share/proj")  # QGIS's PROJ: an older proj.db than the runtime's pyproj
    monkeypatch.setenv("GDAL_DATA", "/usr/share/gdal")
    assert "PYTHONPATH" in worker.worker_environment(str(python))  # not (yet) a managed runtime
    runtime.write_stamp(tmp_path, {"torch": "torch"})
    env = worker.worker_environment(str(python))
    assert not {"PYTHONPATH", "PROJ_DATA", "GDAL_DATA"} & set(env) and env["PYTHONUNBUFFERED"] == "1"
