"""The first-use flow in real QGIS desktop under Xvfb, with the plugin installed from its release zip into an empty
profile (no PYTHONPATH, no CLAY_PYTHON): an algorithm that needs the runtime fails with one line and QGIS offers
the set-up; "Set up Clay runtime…" opens the clay:setupruntime dialog, which installs (torch==2.13.0: the local
CPU wheel) with progress; afterwards the dock shows the device the new runtime sees. Screenshots of the prompt,
the progress and the dock go to test-artifacts/ for a person to look at."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.helpers.qgis import REPO

pytestmark = [
    pytest.mark.gui,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("xvfb-run") and shutil.which("qgis") and shutil.which("import")),
        reason="needs xvfb-run, qgis and ImageMagick's import",
    ),
]

SHOTS = ("setup-1-prompt.png", "setup-2-progress.png", "setup-3-done.png", "setup-4-dock.png")

FLOW_SCRIPT = """
import json, os, subprocess, time, traceback
from pathlib import Path
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QMessageBox
from qgis.core import QgsApplication, QgsSettings
import qgis.utils

STATUS, SHOTS, TORCH = {status!r}, {shots!r}, {torch!r}
status = {{"events": []}}

def note(text):
    status["events"].append(f"{{time.monotonic() - T0:.1f}} s: {{text}}")

def finish():
    Path(STATUS).write_text(json.dumps(status))
    os._exit(0)  # QGIS's exit path is not what this test checks

def guarded(step):
    def run():
        try:
            step()
        except Exception:
            status["error"] = traceback.format_exc()
            finish()
    return run

def later(ms, step):
    QTimer.singleShot(ms, guarded(step))

def shot(name):
    QApplication.processEvents()
    subprocess.run(["import", "-window", "root", os.path.join(SHOTS, name)], check=False, timeout=60)
    note("screenshot " + name)

def start():
    window = qgis.utils.iface.mainWindow()
    window.setGeometry(window.screen().availableGeometry())  # no window manager under Xvfb to maximise
    status["plugin"] = "clay_qgis" in qgis.utils.active_plugins
    status["menu_actions"] = [action.text() for action in qgis.utils.plugins["clay_qgis"].actions]
    later(500, run_something_that_needs_the_runtime)

def run_something_that_needs_the_runtime():
    import processing
    later(2500, look_at_prompt)  # the prompt is modal: this timer fires inside its event loop
    try:
        processing.run("clay:info", {{"DEVICE": 0}})
    except Exception as exc:
        status["algorithm_error"] = str(exc)
    note("clay:info failed as expected")

def look_at_prompt():
    prompter = qgis.utils.plugins["clay_qgis"].prompter
    box = prompter.last_box
    status["prompt_shown"] = box is not None and box.isVisible()
    if box is None:
        finish()
    status["prompt_text"] = box.text() + " | " + box.informativeText()
    status["prompt_buttons"] = [button.text() for button in box.buttons()]
    shot({shot_prompt!r})
    later(1500, fill_in_setup_dialog)  # fires in the set-up dialog's event loop, opened by the click below
    setup = next(button for button in box.buttons() if "Set up" in button.text())
    setup.click()

def setup_dialog():
    shown = [widget for widget in QApplication.topLevelWidgets()
             if widget.isVisible() and hasattr(widget, "runAlgorithm")]
    return shown[0] if shown else None

def fill_in_setup_dialog(tries=0):
    dialog = setup_dialog()
    if dialog is None and tries < 20:
        later(500, lambda: fill_in_setup_dialog(tries + 1))
        return
    status["dialog"] = dialog.windowTitle() if dialog is not None else None
    if dialog is None:
        status["top_level"] = [(type(w).__name__, w.windowTitle(), w.isVisible())
                               for w in QApplication.topLevelWidgets() if w.isVisible()]
        finish()
    dialog.setParameters({{"TORCH": TORCH}})  # the automatic choice would ask the PyTorch index (offline here)
    dialog.setGeometry(80, 60, 900, 640)
    global DIALOG
    DIALOG = dialog
    dialog.runAlgorithm()
    note("set-up started")
    later(25000, look_at_progress)

def look_at_progress():
    from qgis.PyQt.QtWidgets import QProgressBar
    bars = DIALOG.findChildren(QProgressBar)
    status["progress_mid"] = bars[0].value() if bars else None
    shot({shot_progress!r})
    later(2000, wait_for_setup)

def wait_for_setup():
    from qgis.PyQt.QtWidgets import QTextBrowser, QTextEdit
    # the log and the help panel: the log is the one that grows
    text = "\\n".join(view.toPlainText() for view in DIALOG.findChildren(QTextEdit) + DIALOG.findChildren(QTextBrowser))
    if "installed and verified" in text or "failed" in text.lower() or time.monotonic() - T0 > 540:
        status["setup_log_tail"] = text[-1500:]
        status["setting"] = QgsSettings().value("clay/python", "")
        shot({shot_done!r})
        DIALOG.close()
        later(1000, open_dock)
        return
    later(2000, wait_for_setup)

def open_dock():
    plugin = qgis.utils.plugins["clay_qgis"]
    plugin.ensure_dock()  # checks the device in a background task
    later(1000, lambda: wait_for_device(plugin.dock, 0))

def wait_for_device(dock, tries):
    text = dock.device_label.text()
    if "not checked" in text and tries < 60:
        later(1000, lambda: wait_for_device(dock, tries + 1))
        return
    status["device_label"] = text
    status["dock_buttons"] = [dock.setup_button.text(), dock.tool_button.text()]
    shot({shot_dock!r})
    later(500, lambda: dock.setup_button.click())  # the dock's button opens the same set-up: a re-run verifies
    later(2000, rerun_from_dock)

def rerun_from_dock(tries=0):
    dialog = setup_dialog()
    if dialog is None and tries < 20:
        later(500, lambda: rerun_from_dock(tries + 1))
        return
    status["dock_dialog"] = dialog.windowTitle() if dialog is not None else None
    if dialog is None:
        finish()
    dialog.setParameters({{"TORCH": TORCH}})
    global DIALOG
    DIALOG = dialog
    dialog.runAlgorithm()
    later(1000, lambda: wait_for_rerun(0))

def wait_for_rerun(tries):
    from qgis.PyQt.QtWidgets import QTextEdit
    text = "\\n".join(view.toPlainText() for view in DIALOG.findChildren(QTextEdit))
    if "already set up; verified" not in text and tries < 120:
        later(1000, lambda: wait_for_rerun(tries + 1))
        return
    status["rerun_log_tail"] = text[-600:]
    DIALOG.close()
    later(500, finish)

T0 = time.monotonic()
QTimer.singleShot(3000, guarded(start))
"""


def clean_environment(profile: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "CLAY_PYTHON", "QGIS_PLUGINPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if ".venv" not in part)
    env.update({"QGIS_CUSTOM_CONFIG_PATH": str(profile), "QT_QPA_PLATFORM": "xcb", "PYTHONNOUSERSITE": "1"})
    return env


def test_first_use_prompt_setup_progress_and_dock(tmp_path: Path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from package_plugin import build_release
        from qgis_profile import enable_plugin
    finally:
        sys.path.pop(0)
    archive = build_release(tmp_path / "build", tmp_path / "dist")
    profile = tmp_path / "profile"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(profile / "profiles" / "default" / "python" / "plugins")
    enable_plugin(profile)
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    for name in SHOTS:
        (artifacts / name).unlink(missing_ok=True)
    status = tmp_path / "status.json"
    script = tmp_path / "flow.py"
    flow = textwrap.dedent(
        FLOW_SCRIPT.format(
            status=str(status),
            shots=str(artifacts),
            torch="torch==2.13.0",
            shot_prompt=SHOTS[0],
            shot_progress=SHOTS[1],
            shot_done=SHOTS[2],
            shot_dock=SHOTS[3],
        )
    )
    ast.parse(flow)  # a syntax error would leave QGIS showing it in a dialog until the timeout
    script.write_text(flow)
    done = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1400x900x24",
            "qgis",
            "--nologo",
            "--noversioncheck",
            "--code",
            str(script),
        ],
        env=clean_environment(profile),
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert status.exists(), f"QGIS did not run the flow (rc {done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(status.read_text())
    assert "error" not in report, report.get("error")
    assert report["plugin"]
    # 1. the algorithm's one-line error names the fix, and the prompt offers it
    assert "no Clay runtime" in report["algorithm_error"] and "\n" not in report["algorithm_error"]
    assert report["prompt_shown"], report
    assert "Set up Clay runtime…" in report["prompt_buttons"]
    # 2. the button opened the set-up dialog, which installed and verified the runtime in the profile
    assert report["dialog"] and "Set up Clay runtime" in report["dialog"]
    assert 0 < report["progress_mid"] < 100, report
    assert "installed and verified" in report["setup_log_tail"], report["setup_log_tail"]
    runtime_python = profile / "profiles" / "default" / "clay-runtime" / "bin" / "python"
    assert report["setting"] == str(runtime_python)
    # 3. the dock shows the device the new runtime sees
    assert "torch 2.13.0" in report["device_label"] and "unavailable" not in report["device_label"], report
    assert "Set up Clay runtime…" in report["menu_actions"]
    # 4. the dock's button opens the set-up again, which now only verifies
    assert report["dock_dialog"] and "Set up Clay runtime" in report["dock_dialog"]
    assert "already set up; verified" in report["rerun_log_tail"], report["rerun_log_tail"]
    for name in SHOTS:
        assert (artifacts / name).stat().st_size > 10_000, name
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
