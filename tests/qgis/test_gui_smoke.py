"""Real QGIS desktop under Xvfb with the plugin enabled: it must start without a Python error, show the
plugin's menu and provider, and leave a screenshot in test-artifacts/ for a person to look at."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.helpers.qgis import REPO

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not (shutil.which("xvfb-run") and shutil.which("qgis")), reason="needs xvfb-run and qgis"),
]

CHECK_SCRIPT = """
import json, os, subprocess, traceback
from qgis.PyQt.QtCore import QTimer
from qgis.core import QgsApplication
import qgis.utils

STATUS, SHOT = {status!r}, {shot!r}

def check():
    status = {{}}
    try:
        status["active_plugins"] = list(qgis.utils.active_plugins)
        status["provider"] = QgsApplication.processingRegistry().providerById("clay") is not None
        menu_titles = [a.text() for a in qgis.utils.iface.mainWindow().menuBar().actions()]
        plugin_menu = qgis.utils.iface.pluginMenu()
        status["plugin_menu"] = [a.text() for a in plugin_menu.actions()]
        status["menus"] = menu_titles
        subprocess.run(["import", "-window", "root", SHOT], check=False, timeout=60)
    except Exception:
        status["error"] = traceback.format_exc()
    with open(STATUS, "w") as out:
        json.dump(status, out)
    os._exit(0)  # skip QGIS's exit path: it is not what this test checks

def show_plugin():
    # What a person would look at: the toolbox filtered to the clay provider.
    window = qgis.utils.iface.mainWindow()
    window.setGeometry(window.screen().availableGeometry())  # no window manager under Xvfb to maximise
    toolbox = qgis.utils.plugins["processing"].toolbox
    toolbox.setVisible(True)
    toolbox.searchBox.setText("clay")
    QTimer.singleShot(2500, check)

QTimer.singleShot(3000, show_plugin)
"""


def test_qgis_desktop_starts_with_the_plugin(tmp_path: Path, qgis_process_env):
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    status, shot = tmp_path / "status.json", artifacts / "qgis-desktop-with-plugin.png"
    shot.unlink(missing_ok=True)
    script = tmp_path / "check.py"
    script.write_text(textwrap.dedent(CHECK_SCRIPT.format(status=str(status), shot=str(shot))))
    env = dict(qgis_process_env, QT_QPA_PLATFORM="xcb")
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
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert status.exists(), f"QGIS did not run the check (rc {done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(status.read_text())
    assert "error" not in report, report.get("error")
    assert "clay_qgis" in report["active_plugins"], report
    assert report["provider"]
    assert any("Clay" in title for title in report["plugin_menu"]), report["plugin_menu"]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert shot.exists() and shot.stat().st_size > 10_000
