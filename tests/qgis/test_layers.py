"""clay_qgis.layers: GeoParquet -> memory layer, the vector cache, scores in the layer and the styling."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from clay_core.parquet import read_embeddings
from clay_qgis.session import SearchSession


@pytest.fixture
def layers(qgis_app):
    from clay_qgis import layers

    layers.clear_cache()
    return layers


def test_layer_has_scalar_fields_crs_and_one_feature_per_chip(layers, embeddings_file):
    layer = layers.load_layer(embeddings_file)
    assert layer.isValid() and layer.featureCount() == 12
    assert layer.crs().authid() == "EPSG:4326"
    names = layer.fields().names()
    assert names == ["chip_id", "date", "source_url", "row", "col", "nodata_fraction", "similarity", "rank", "example"]
    assert "embeddings" not in names
    data = read_embeddings(embeddings_file)
    feature = next(layer.getFeatures())
    assert feature["chip_id"] == data.chip_ids[0]
    assert feature["date"].toString("yyyy-MM-dd") == "2017-02-16"
    # geometry round trip: the same corners as the file's WKB
    ring = np.array([[p.x(), p.y()] for p in feature.geometry().asPolygon()[0]])
    from clay_core.parquet import wkb_polygon_rings

    np.testing.assert_allclose(ring, wkb_polygon_rings(data.geometry_wkb[0]), atol=1e-12)
    assert layer.customProperty(layers.PATH_PROPERTY) == str(embeddings_file.resolve())


def test_layer_has_a_spatial_index_for_the_map_tool(layers, embeddings_file):
    from qgis.core import QgsFeatureSource

    layer = layers.load_layer(embeddings_file)
    assert layer.dataProvider().hasSpatialIndex() == QgsFeatureSource.SpatialIndexPresence.SpatialIndexPresent


def test_row_fids_are_forgotten_when_the_project_removes_the_layer(layers, embeddings_file):
    from qgis.core import QgsProject

    kept, removed = layers.load_layer(embeddings_file), layers.load_layer(embeddings_file)
    embedding_set = layers.embedding_set_of(removed)
    layers.row_fids(removed, embedding_set)
    project = QgsProject.instance()
    project.addMapLayers([kept, removed])
    kept_id, removed_id = kept.id(), removed.id()
    assert {kept_id, removed_id} <= set(layers._ROW_FIDS)
    project.removeMapLayer(removed_id)
    assert removed_id not in layers._ROW_FIDS and kept_id in layers._ROW_FIDS
    project.removeAllMapLayers()  # also what closing or clearing the project does
    assert not set(layers._ROW_FIDS) & {kept_id, removed_id}


def test_vectors_are_cached_per_file_and_reloaded_when_it_changes(layers, tmp_path, make_embeddings):
    path = make_embeddings(tmp_path / "e.gpq")
    first = layers.load_embedding_set(path)
    assert layers.load_embedding_set(path) is first
    make_embeddings(path, seed=9, overwrite=True)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse clocks
    second = layers.load_embedding_set(path)
    assert second is not first
    assert not np.allclose(second.index.vectors, first.index.vectors)


def test_patch_view_has_one_feature_per_patch_inside_its_chip(layers, tmp_path, make_embeddings):
    path = make_embeddings(tmp_path / "p.gpq", rows=1, cols=2, shape=(2, 3, 4))
    chips = layers.load_layer(path, "chips")
    patches = layers.load_layer(path, "patches")
    assert patches.featureCount() == 2 * 2 * 3
    assert {"patch_row", "patch_col"} <= set(patches.fields().names())
    chip_geometry = {f["chip_id"]: f.geometry() for f in chips.getFeatures()}
    total_area = 0.0
    for feature in patches.getFeatures():
        geometry = feature.geometry()
        # Patch corners are exact UTM corners in CRS84; the chip's straight CRS84 edges pass within ~1e-8 deg.
        assert chip_geometry[feature["chip_id"]].buffer(1e-6, 2).contains(geometry)
        total_area += geometry.area()
    assert total_area == pytest.approx(sum(g.area() for g in chip_geometry.values()), rel=1e-6)
    # The view's patches are the writer's own exploded patches (same corners), not an approximation.
    exploded = layers.load_layer(
        make_embeddings(tmp_path / "e.gpq", rows=1, cols=2, shape=(2, 3, 4), explode_patches=True), "chips"
    )
    written = {(f["chip_id"], f["patch_row"], f["patch_col"]): f.geometry() for f in exploded.getFeatures()}
    for feature in patches.getFeatures():
        expected = written[(feature["chip_id"], feature["patch_row"], feature["patch_col"])]
        for ours, theirs in zip(feature.geometry().vertices(), expected.vertices(), strict=True):
            assert abs(ours.x() - theirs.x()) < 1e-7 and abs(ours.y() - theirs.y()) < 1e-7
    with pytest.raises(Exception, match="no patch grid"):
        layers.load_embedding_set(make_embeddings(tmp_path / "m.gpq"), "patches")


def test_a_click_stores_scores_and_styles_graduated_viridis(layers, embeddings_file):
    layer = layers.load_layer(embeddings_file)
    session = SearchSession(layer, top_k=3, centred=False)  # plain cosine
    session.add_example(5)
    session.add_example(0, layers.NEGATIVE)
    scored = session.scored
    data = read_embeddings(embeddings_file)
    unit = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
    query = unit[5] - unit[0]
    expected = unit @ (query / np.linalg.norm(query))
    stored = {f["chip_id"]: (f["similarity"], f["rank"], f["example"]) for f in layer.getFeatures()}
    for row, chip_id in enumerate(data.chip_ids):
        assert stored[chip_id][0] == pytest.approx(expected[row], abs=1e-6)
        assert stored[chip_id][1] == scored.ranks[row]
    assert stored[data.chip_ids[5]][2] == "positive" and stored[data.chip_ids[0]][2] == "negative"
    renderer = layer.renderer()
    assert renderer.type() == "graduatedSymbol" and renderer.classAttribute() == "similarity"
    ranges = renderer.ranges()
    assert ranges[0].lowerValue() <= expected.min() and ranges[-1].upperValue() >= expected.max()
    colors = [r.symbol().color().name() for r in ranges]
    assert colors[0] == layers.VIRIDIS[0] and colors[-1] == layers.VIRIDIS[-1]
    assert renderer.orderByEnabled()
    legend_labels = [n.data(0) for n in layer.legend().createLayerTreeModelLegendNodes(_layer_node(layer))]
    assert any("top 3" in str(label) for label in legend_labels)
    assert any("negative" in str(label) for label in legend_labels)


def _layer_node(layer):
    from qgis.core import QgsLayerTreeLayer

    return QgsLayerTreeLayer(layer)


def test_threshold_hides_low_scores_and_top_k_outline_expression(layers, embeddings_file):
    layer = layers.load_layer(embeddings_file)
    session = SearchSession(layer, top_k=2)
    session.add_example(1)
    session.set_view(threshold=0.2)
    renderer = layer.renderer()
    assert renderer.ranges()[0].lowerValue() == pytest.approx(max(0.2, session.scored.scores.min()), abs=1e-5)
    below = [f for f in layer.getFeatures() if f["similarity"] < 0.2]
    assert below and all(renderer.rangeForValue(f["similarity"]) is None for f in below)
    ranges = renderer.ranges()  # keep the copies alive while their symbols are used
    symbol = ranges[0].symbol()
    enabled = symbol.symbolLayer(1).dataDefinedProperties().property(layers._property("LayerEnabled"))
    assert '"rank" <= 2' in enabled.expressionString()


def test_session_positive_negative_clear_and_export(layers, embeddings_file, tmp_path):
    from qgis.core import QgsVectorLayer

    layer = layers.load_layer(embeddings_file)
    session = SearchSession(layer, top_k=4)
    session.add_example(2)
    session.add_example(7, layers.POSITIVE)
    session.add_example(11, layers.NEGATIVE)
    assert (session.positives, session.negatives) == ([2, 7], [11])
    exported = session.export_matches(tmp_path / "matches.gpkg")
    assert exported == 4
    saved = QgsVectorLayer(str(tmp_path / "matches.gpkg"), "m", "ogr")
    ranks = sorted(f["rank"] for f in saved.getFeatures())
    assert ranks == [1, 2, 3, 4]
    session.clear()
    assert all(f["similarity"] is None or str(f["similarity"]) == "NULL" for f in layer.getFeatures())
    assert layer.renderer().type() == "singleSymbol"


def test_scores_reach_a_layer_saved_elsewhere_through_its_chip_ids(layers, embeddings_file, tmp_path):
    """A layer that is not our memory layer (e.g. a GeoPackage copy) is matched row <-> feature by chip_id."""
    from qgis.core import QgsVectorFileWriter, QgsVectorLayer

    memory = layers.load_layer(embeddings_file)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    QgsVectorFileWriter.writeAsVectorFormatV3(
        memory,
        str(tmp_path / "copy.gpkg"),
        memory.transformContext() if hasattr(memory, "transformContext") else None,
        options,
    )
    copy = QgsVectorLayer(str(tmp_path / "copy.gpkg"), "copy", "ogr")
    layers.tag_layer(copy, layers.embedding_set_of(memory))
    session = SearchSession(copy)
    session.add_example(3)
    best = max(copy.getFeatures(), key=lambda f: f["similarity"])
    assert best["chip_id"] == layers.embedding_set_of(memory).columns["chip_id"][3]


def test_large_layers_score_through_the_sketch_with_the_exact_top_k(layers, tmp_path, make_embeddings, monkeypatch):
    from clay_core.similarity import top_k

    path = make_embeddings(tmp_path / "big.gpq", rows=30, cols=40, shape=(32,), seed=3)
    layer = layers.load_layer(path)
    embedding_set = layers.embedding_set_of(layer)
    monkeypatch.setattr(layers, "FAST_PATH_ROWS", 100)  # "large" for this test: 1200 rows
    monkeypatch.setattr(layers, "EXACT_TOP_MIN", 20)
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
