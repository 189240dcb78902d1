"""The first-use flow in real QGIS desktop under Xvfb, with the plugin installed from its release zip into an empty
profile (no PYTHONPATH, no CLAY_PYTHON): an algorithm that needs the runtime fails with one line and QGIS offers
the set-up; "Set up Clay runtime…" opens the clay:setupruntime dialog, which installs (torch==2.13.0: the local
CPU wheel) with progress; afterwards the dock shows the device the new runtime sees. Screenshots of the prompt,
the progress and the dock go to test-artifacts/ for a person to look at."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.qgis import REPO
from tests.helpers.qgis_desktop import fresh_artifacts, needs_desktop, run_desktop

pytestmark = [pytest.mark.gui, pytest.mark.slow, needs_desktop("import")]

SHOTS = ("setup-1-prompt.png", "setup-2-progress.png", "setup-3-done.png", "setup-4-dock.png")

FLOW_SCRIPT = """
import time
from qgis.core import QgsSettings

status["events"] = []

def note(text):
    status["events"].append(f"{time.monotonic() - T0:.1f} s: {text}")

def shot(name):
    save_screen(os.path.join(ARTIFACTS, name))
    note("screenshot " + name)

def start():
    fill_screen()
    status["plugin"] = "clay_qgis" in qgis.utils.active_plugins
    status["menu_actions"] = [action.text() for action in qgis.utils.plugins["clay_qgis"].actions]
    later(500, run_something_that_needs_the_runtime)

def run_something_that_needs_the_runtime():
    import processing
    later(2500, look_at_prompt)  # the prompt is modal: this timer fires inside its event loop
    try:
        processing.run("clay:info", {"DEVICE": 0})
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
    shot(SHOT_PROMPT)
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
    dialog.setParameters({"TORCH": TORCH})  # the automatic choice would ask the PyTorch index (offline here)
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
    shot(SHOT_PROGRESS)
    later(2000, wait_for_setup)

def wait_for_setup():
    from qgis.PyQt.QtWidgets import QTextBrowser, QTextEdit
    # the log and the help panel: the log is the one that grows
    text = "\\n".join(view.toPlainText() for view in DIALOG.findChildren(QTextEdit) + DIALOG.findChildren(QTextBrowser))
    if "installed and verified" in text or "failed" in text.lower() or time.monotonic() - T0 > 540:
        status["setup_log_tail"] = text[-1500:]
        status["setting"] = QgsSettings().value("clay/python", "")
        shot(SHOT_DONE)
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
    shot(SHOT_DOCK)
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
    dialog.setParameters({"TORCH": TORCH})
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
later(3000, start)
"""


def clean_environment(profile: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "CLAY_PYTHON", "QGIS_PLUGINPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if ".venv" not in part)
    env.update({"QGIS_CUSTOM_CONFIG_PATH": str(profile), "PYTHONNOUSERSITE": "1"})
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
    artifacts = fresh_artifacts(*SHOTS)
    constants = {"ARTIFACTS": str(artifacts), "TORCH": "torch==2.13.0"}
    constants.update(SHOT_PROMPT=SHOTS[0], SHOT_PROGRESS=SHOTS[1], SHOT_DONE=SHOTS[2], SHOT_DOCK=SHOTS[3])
    env = clean_environment(profile)
    report = run_desktop(FLOW_SCRIPT, tmp_path, env, constants, screen="1400x900", timeout=900)
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
