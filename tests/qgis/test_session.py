"""clay_qgis.session: one search over the project's embeddings layers (a click on one tile restyles every tile,
the classifier mode turns clicks into labels and refits), its examples, export, and the scoring step it shares
with clay:similarity (the sketch for large layers)."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.parquet import read_embeddings, write_geoparquet
from clay_qgis import layers, vector_cache
from clay_qgis import session as session_module
from clay_qgis.schema import NEGATIVE, POSITIVE
from clay_qgis.session import SearchSession
from tests.helpers.embeddings import EOBOX_ORIGIN, centred_reference, chip_grid
from tests.helpers.qgis import click_canvas as click


@pytest.fixture(autouse=True)
def empty_cache(qgis_app):
    vector_cache.clear_cache()


@pytest.fixture
def two_tiles(qgis_app, qgis_canvas, tmp_path):
    """Two neighbouring tiles (3 x 4 chips each, same chip ids) loaded as layers and shown on the canvas."""
    from qgis.core import QgsProject

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


def test_session_positive_negative_clear_and_export(embeddings_file, tmp_path):
    from qgis.core import QgsVectorLayer

    layer = layers.load_layer(embeddings_file)
    session = SearchSession(layer, top_k=4)
    session.add_example(2)
    session.add_example(7, POSITIVE)
    session.add_example(11, NEGATIVE)
    assert (session.positives, session.negatives) == ([2, 7], [11])
    exported = session.export_matches(tmp_path / "matches.gpkg")
    assert exported == 4
    saved = QgsVectorLayer(str(tmp_path / "matches.gpkg"), "m", "ogr")
    ranks = sorted(f["rank"] for f in saved.getFeatures())
    assert ranks == [1, 2, 3, 4]
    session.clear()
    assert all(f["similarity"] is None or str(f["similarity"]) == "NULL" for f in layer.getFeatures())
    assert layer.renderer().type() == "singleSymbol"


def test_large_layers_score_through_the_sketch_with_the_exact_top_k(tmp_path, make_embeddings, monkeypatch):
    from clay_core.similarity import top_k

    path = make_embeddings(tmp_path / "big.gpq", rows=30, cols=40, shape=(32,), seed=3)
    layer = layers.load_layer(path)
    embedding_set = layers.embedding_set_of(layer)
    monkeypatch.setattr(session_module, "FAST_PATH_ROWS", 100)  # "large" for this test: 1200 rows
    monkeypatch.setattr(session_module, "EXACT_TOP_MIN", 20)
    exact = embedding_set.index.scores(embedding_set.index.direction([7]), centred=True)
    session = SearchSession(layer, top_k=5)
    first = session.add_example(7).scored  # exact while the sketch is built
    np.testing.assert_allclose(first.scores, exact, atol=1e-6)
    assert embedding_set.sketch_build is not None, "the first click did not start building the sketch"
    embedding_set.sketch_build.join(timeout=60)
    assert embedding_set.index.projection_ready()
    second = session.add_example(7).scored
    np.testing.assert_array_equal(top_k(second.scores, 20), top_k(exact, 20))
    stored = {f.id(): (f["similarity"], f["rank"]) for f in layer.getFeatures()}
    fids = layers.row_fids(layer, embedding_set)
    for row in top_k(exact, 5).tolist():
        assert stored[int(fids[row])][0] == pytest.approx(exact[row], abs=1e-6)
        assert stored[int(fids[row])][1] == second.ranks[row] <= 5
