"""Real QGIS desktop under Xvfb with the plugin enabled: it must start without a Python error, show the
plugin's menu and provider, and leave a screenshot in test-artifacts/ for a person to look at."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.qgis_desktop import fresh_artifacts, needs_desktop, run_desktop

pytestmark = [pytest.mark.gui, needs_desktop("import")]

SHOT = "qgis-desktop-with-plugin.png"

CHECK_SCRIPT = """
from qgis.core import QgsApplication

def check():
    status["active_plugins"] = list(qgis.utils.active_plugins)
    status["provider"] = QgsApplication.processingRegistry().providerById("clay") is not None
    status["menus"] = [a.text() for a in qgis.utils.iface.mainWindow().menuBar().actions()]
    status["plugin_menu"] = [a.text() for a in qgis.utils.iface.pluginMenu().actions()]
    save_screen(SHOT)
    finish()

def show_plugin():
    # What a person would look at: the toolbox filtered to the clay provider.
    fill_screen()
    toolbox = qgis.utils.plugins["processing"].toolbox
    toolbox.setVisible(True)
    toolbox.searchBox.setText("clay")
    later(2500, check)

later(3000, show_plugin)
"""


def test_qgis_desktop_starts_with_the_plugin(tmp_path: Path, qgis_process_env):
    shot = fresh_artifacts(SHOT) / SHOT
    report = run_desktop(CHECK_SCRIPT, tmp_path, qgis_process_env, {"SHOT": str(shot)}, screen="1400x900")
    assert "clay_qgis" in report["active_plugins"], report
    assert report["provider"]
    assert any("Clay" in title for title in report["plugin_menu"]), report["plugin_menu"]
    assert shot.exists() and shot.stat().st_size > 10_000
