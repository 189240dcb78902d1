"""The find-similar map tool and the dock, driven by simulated clicks on a headless QgsMapCanvas."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.parquet import read_embeddings
from tests.helpers.qgis import click_canvas as click


@pytest.fixture
def canvas_with(qgis_app, qgis_canvas):
    """Show a layer on the canvas in its own CRS, zoomed to it, like a user who just loaded it."""

    def show(layer):
        from qgis.core import QgsProject

        QgsProject.instance().addMapLayer(layer)
        qgis_canvas.resize(600, 400)
        qgis_canvas.setDestinationCrs(layer.crs())
        qgis_canvas.setLayers([layer])
        qgis_canvas.setExtent(layer.extent())
        qgis_canvas.refresh()
        return qgis_canvas

    yield show
    from qgis.core import QgsProject

    QgsProject.instance().removeAllMapLayers()


def centre_of(layer, chip_id, patch=None):
    for feature in layer.getFeatures():
        if feature["chip_id"] == chip_id and (patch is None or (feature["patch_row"], feature["patch_col"]) == patch):
            return feature.geometry().centroid().asPoint()
    raise AssertionError(chip_id)


def test_click_on_a_chip_scores_and_styles_the_layer(canvas_with, embeddings_file):
    from qgis.PyQt.QtCore import Qt

    from clay_qgis import layers
    from clay_qgis.gui.map_tool import FindSimilarMapTool

    layer = layers.load_layer(embeddings_file)
    canvas = canvas_with(layer)
    tool = FindSimilarMapTool(canvas, lambda: layer)
    canvas.setMapTool(tool)
    sessions, failures = [], []
    tool.scored.connect(sessions.append)
    tool.failed.connect(failures.append)
    data = read_embeddings(embeddings_file)
    clicked = data.chip_ids[6]
    click(tool, canvas, centre_of(layer, clicked))
    assert not failures and len(sessions) == 1
    unit = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
    centred = unit - unit.mean(axis=0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    expected = centred @ centred[6]  # centred cosine: cos(u - m, u_6 - m)
    got = {f["chip_id"]: f["similarity"] for f in layer.getFeatures()}
    for row, chip_id in enumerate(data.chip_ids):
        assert got[chip_id] == pytest.approx(expected[row], abs=1e-5)
    assert layer.renderer().type() == "graduatedSymbol"
    assert [f["example"] for f in layer.getFeatures() if f["chip_id"] == clicked] == ["positive"]

    # shift-click: a second positive; ctrl-click: a negative; the query follows
    click(tool, canvas, centre_of(layer, data.chip_ids[1]), Qt.KeyboardModifier.ShiftModifier)
    click(tool, canvas, centre_of(layer, data.chip_ids[11]), Qt.KeyboardModifier.ControlModifier)
    session = sessions[-1]
    assert (session.positives, session.negatives) == ([6, 1], [11])
    query = unit[[6, 1]].mean(axis=0) - unit[11]
    expected = centred @ (query / np.linalg.norm(query))
    got = {f["chip_id"]: f["similarity"] for f in layer.getFeatures()}
    assert got[data.chip_ids[3]] == pytest.approx(expected[3], abs=1e-5)

    # a click outside every chip explains itself instead of failing silently
    extent = layer.extent()
    from qgis.core import QgsPointXY

    canvas.setExtent(extent.buffered(extent.width()))
    click(tool, canvas, QgsPointXY(extent.xMaximum() + extent.width() * 0.5, extent.yMaximum()))
    assert failures and "no chip under the cursor" in failures[-1]


def test_a_click_looks_up_the_chip_under_the_cursor_once(canvas_with, embeddings_file, monkeypatch):
    """The spatial query (feature_at) is the costly part of a click on a big layer: one per layer tried."""
    from clay_qgis import layers
    from clay_qgis.gui.map_tool import FindSimilarMapTool

    layer = layers.load_layer(embeddings_file)
    canvas = canvas_with(layer)
    tool = FindSimilarMapTool(canvas, lambda: layer)
    lookups = []
    real_feature_at = tool.feature_at

    def counted(*args):
        lookups.append(args[0].id())
        return real_feature_at(*args)

    monkeypatch.setattr(tool, "feature_at", counted)
    sessions = []
    tool.scored.connect(sessions.append)
    click(tool, canvas, centre_of(layer, read_embeddings(embeddings_file).chip_ids[4]))
    assert len(sessions) == 1 and sessions[0].positives == [4]
    assert lookups == [layer.id()]


def test_click_works_on_exploded_patches(canvas_with, make_embeddings, tmp_path):
    from clay_qgis import layers
    from clay_qgis.gui.map_tool import FindSimilarMapTool

    path = make_embeddings(tmp_path / "p.gpq", rows=2, cols=2, shape=(3, 3, 8))
    layer = layers.load_layer(path, "patches")
    canvas = canvas_with(layer)
    tool = FindSimilarMapTool(canvas, lambda: layer)
    sessions = []
    tool.scored.connect(sessions.append)
    click(tool, canvas, centre_of(layer, "33UUU_20170216_001_000", (2, 1)))
    session = sessions[-1]
    row = session.positives[0]
    assert session.embedding_set.key(row) == ("33UUU_20170216_001_000", 2, 1)
    clicked = [f for f in layer.getFeatures() if f["example"] == "positive"]
    assert len(clicked) == 1 and clicked[0]["similarity"] == pytest.approx(1.0, abs=1e-6)
    assert layer.featureCount() == 36


def test_dock_threshold_top_k_histogram_and_export(canvas_with, embeddings_file, tmp_path):
    from qgis.core import QgsVectorLayer

    from clay_qgis import layers
    from clay_qgis.gui.dock import SimilarityDock
    from clay_qgis.gui.map_tool import FindSimilarMapTool

    layer = layers.load_layer(embeddings_file)
    canvas = canvas_with(layer)
    dock = SimilarityDock()
    tool = FindSimilarMapTool(canvas, lambda: layer)
    tool.scored.connect(dock.show_session)
    data = read_embeddings(embeddings_file)
    click(tool, canvas, centre_of(layer, data.chip_ids[0]))
    assert dock.histogram.counts.sum() == 12
    assert "test-model" in dock.layer_label.text()
    dock.top_k.setValue(3)
    dock.use_threshold.setChecked(True)
    dock.threshold_slider.setValue(600)  # 60 % of the way from the lowest to the highest score
    session = dock.session
    scores = session.scored.scores
    threshold = scores.min() + 0.6 * (scores.max() - scores.min())
    assert session.top_k == 3 and session.threshold == pytest.approx(threshold, abs=1e-6)
    expected_rows = [r for r in np.argsort(-scores, kind="stable")[:3] if scores[r] >= threshold]
    assert session.match_rows().tolist() == expected_rows
    assert layer.renderer().ranges()[0].lowerValue() == pytest.approx(threshold, abs=1e-5)
    count = dock.export(str(tmp_path / "matches.gpkg"))
    saved = QgsVectorLayer(str(tmp_path / "matches.gpkg"), "m", "ogr")
    assert count == len(expected_rows) == saved.featureCount()
    dock.show_device({"device": "cpu", "device_name": "Test CPU", "precision": "fp32", "torch": "2.x"})
    assert "fp32" in dock.device_label.text()
    dock.clear()
    assert layer.renderer().type() == "singleSymbol" and dock.histogram.counts.sum() == 0
