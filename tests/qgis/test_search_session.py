"""The map tool and dock on several tiles: one click restyles every embeddings layer, and the classifier mode
turns clicks into labels and refits."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.parquet import read_embeddings, write_geoparquet
from tests.helpers.embeddings import EOBOX_ORIGIN, centred_reference, chip_grid
from tests.helpers.qgis import click_canvas as click


@pytest.fixture
def two_tiles(qgis_app, qgis_canvas, tmp_path):
    """Two neighbouring tiles (3 x 4 chips each, same chip ids) loaded as layers and shown on the canvas."""
    from qgis.core import QgsProject

    from clay_qgis import layers

    paths = []
    rng = np.random.default_rng(0)
    for name, shift in (("west.gpq", 0.0), ("east.gpq", 4 * 1280.0)):
        records = chip_grid(3, 4, origin=(EOBOX_ORIGIN[0] + shift, EOBOX_ORIGIN[1]))
        vectors = (3.0 + rng.standard_normal((12, 16))).astype(np.float32)
        paths.append(write_geoparquet(tmp_path / name, records, vectors, {"model": "test-model", "level": "mean"}))
    loaded = [layers.load_layer(path) for path in paths]
    for layer in loaded:
        QgsProject.instance().addMapLayer(layer)
    qgis_canvas.resize(800, 400)
    qgis_canvas.setDestinationCrs(loaded[0].crs())
    qgis_canvas.setLayers(loaded)
    extent = loaded[0].extent()
    extent.combineExtentWith(loaded[1].extent())
    qgis_canvas.setExtent(extent)
    yield qgis_canvas, loaded, paths
    QgsProject.instance().removeAllMapLayers()


def centre(layer, chip_id):
    return next(f.geometry().centroid().asPoint() for f in layer.getFeatures() if f["chip_id"] == chip_id)


def test_a_click_on_one_tile_restyles_every_tile(two_tiles):
    from clay_qgis.gui.map_tool import FindSimilarMapTool

    canvas, (west, east), paths = two_tiles
    tool = FindSimilarMapTool(canvas, lambda: west)  # the active layer is the west tile
    failures = []
    tool.failed.connect(failures.append)
    west_data, east_data = read_embeddings(paths[0]), read_embeddings(paths[1])
    click(tool, canvas, centre(east, east_data.chip_ids[5]))  # a chip of the *east* tile
    assert not failures
    session = tool.session
    assert session.layer is east and len(session.members) == 2
    expected = centred_reference(np.concatenate([west_data.vectors, east_data.vectors]), [12 + 5])
    order = np.argsort(-expected, kind="stable")
    for offset, (layer, data) in enumerate(((west, west_data), (east, east_data))):
        got = {f["chip_id"]: (f["similarity"], f["rank"]) for f in layer.getFeatures()}
        for row, chip in enumerate(data.chip_ids):
            assert got[chip][0] == pytest.approx(expected[12 * offset + row], abs=1e-5)
            assert got[chip][1] == int(np.flatnonzero(order == 12 * offset + row)[0]) + 1  # one rank order
        assert layer.renderer().type() == "graduatedSymbol"
    # both layers share one set of class breaks
    assert [r.lowerValue() for r in west.renderer().ranges()] == [r.lowerValue() for r in east.renderer().ranges()]


def test_dock_classifier_refits_on_every_label_and_exports_all_tiles(two_tiles, tmp_path):
    from qgis.core import QgsVectorLayer
    from qgis.PyQt.QtCore import Qt

    from clay_core.classify import fit_classifier
    from clay_core.similarity import SimilarityIndex, joint_mean
    from clay_qgis.gui.dock import SimilarityDock
    from clay_qgis.gui.map_tool import FindSimilarMapTool

    canvas, (west, east), paths = two_tiles
    dock = SimilarityDock()
    dock.classifier_box.setChecked(True)
    tool = FindSimilarMapTool(canvas, lambda: west)
    tool.scored.connect(dock.show_session)
    west_data, east_data = read_embeddings(paths[0]), read_embeddings(paths[1])
    click(tool, canvas, centre(west, west_data.chip_ids[0]))
    assert "add a negative" in dock.status_label.text()  # one kind of label: similarity meanwhile
    click(tool, canvas, centre(east, east_data.chip_ids[3]), Qt.KeyboardModifier.ShiftModifier)
    click(tool, canvas, centre(east, east_data.chip_ids[9]), Qt.KeyboardModifier.ControlModifier)
    session = dock.session
    assert session.counts() == (2, 1) and session.classifier is not None
    assert "Probabilities" in dock.histogram_label.text() and "classifier fitted" in dock.status_label.text()
    # the same model fitted by hand on the three labels, centred on both tiles' mean
    west_index, east_index = SimilarityIndex(west_data.vectors), SimilarityIndex(east_data.vectors)
    mean = joint_mean([west_index, east_index])
    west_index.use_mean(mean)
    east_index.use_mean(mean)
    classifier = fit_classifier(
        west_index,
        [],
        [],
        positive_vectors=np.stack([west_data.vectors[0], east_data.vectors[3]]),
        negative_vectors=east_data.vectors[[9]],
    )
    for layer, index, data in ((west, west_index, west_data), (east, east_index, east_data)):
        expected = classifier.probabilities(index)
        got = {f["chip_id"]: f["probability"] for f in layer.getFeatures()}
        np.testing.assert_allclose([got[chip] for chip in data.chip_ids], expected, atol=1e-5)
        assert layer.renderer().classAttribute() == "probability"
    examples = {f["chip_id"]: f["example"] for f in east.getFeatures()}
    assert examples[east_data.chip_ids[3]] == "positive" and examples[east_data.chip_ids[9]] == "negative"
    dock.top_k.setValue(5)
    count = dock.export(str(tmp_path / "matches.gpkg"))
    saved = QgsVectorLayer(str(tmp_path / "matches.gpkg"), "m", "ogr")
    assert count == 5 == saved.featureCount()
    assert {f["source_file"] for f in saved.getFeatures()} <= {"west.gpq", "east.gpq"}
    probabilities = [f["probability"] for f in saved.getFeatures()]
    assert probabilities == sorted(probabilities, reverse=True)
    # back to similarity: the same examples, centred cosine again
    dock.classifier_box.setChecked(False)
    assert west.renderer().classAttribute() == "similarity"
    dock.clear()
    assert west.renderer().type() == "singleSymbol" and east.renderer().type() == "singleSymbol"
