"""clay_qgis.layers: embeddings -> memory layers, features built in one pass, row <-> fid, scores in the layer."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.parquet import read_embeddings
from clay_qgis import layers
from clay_qgis.session import SearchSession


@pytest.fixture(autouse=True)
def empty_cache(qgis_app):
    from clay_qgis import vector_cache

    vector_cache.clear_cache()


def test_layer_has_scalar_fields_crs_and_one_feature_per_chip(embeddings_file):
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


def test_layer_has_a_spatial_index_for_the_map_tool(embeddings_file):
    from qgis.core import QgsFeatureSource

    layer = layers.load_layer(embeddings_file)
    assert layer.dataProvider().hasSpatialIndex() == QgsFeatureSource.SpatialIndexPresence.SpatialIndexPresent


def test_row_fids_are_forgotten_when_the_project_removes_the_layer(embeddings_file):
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


def test_scores_reach_a_layer_saved_elsewhere_through_its_chip_ids(embeddings_file, tmp_path):
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


def test_features_across_files_keep_the_order_given_and_name_each_file(tmp_path, make_embeddings, monkeypatch):
    """Rows numbered across two files, in any order: geometry, attributes and the given values land on the right
    rows, source_file names the file, and each file's features are built in one call (not one per row)."""
    from qgis.core import QgsField

    from clay_qgis import compat, vector_cache
    from clay_qgis.schema import SOURCE_FILE, layer_fields

    first = vector_cache.load_embedding_set(make_embeddings(tmp_path / "a.gpq", rows=2, cols=3))
    second = vector_cache.load_embedding_set(make_embeddings(tmp_path / "b.gpq", rows=3, cols=3, seed=1))
    offsets = np.array([0, len(first), len(first) + len(second)])
    fields = layer_fields("chips")
    fields.append(QgsField(SOURCE_FILE, compat.STRING))
    rows = np.array([14, 0, 7, 5, 6])
    scores = np.linspace(-1.0, 1.0, 15)
    ranks = np.arange(15, 0, -1)
    calls = []
    real_features_for = layers.features_for
    monkeypatch.setattr(layers, "features_for", lambda *args: calls.append(1) or real_features_for(*args))
    values = layers.score_values(rows, scores, ranks, {7: "positive", 0: "negative", 3: "negative"})
    features = layers.features_across([first, second], offsets, fields, rows, values)
    assert len(calls) == 2
    expected_sets = [(second, 8), (first, 0), (second, 1), (first, 5), (second, 0)]
    for feature, row, (embedding_set, local) in zip(features, rows.tolist(), expected_sets, strict=True):
        assert feature[SOURCE_FILE] == embedding_set.path.name
        assert feature["chip_id"] == embedding_set.columns["chip_id"][local]
        assert feature["date"].toPyDate() == embedding_set.columns["date"][local]
        assert bytes(feature.geometry().asWkb()) == embedding_set.wkb[local]
        assert feature["similarity"] == pytest.approx(scores[row]) and feature["rank"] == ranks[row]
    assert [f["example"] for f in features] == [None, "negative", "positive", None, None]


def test_score_values_in_another_field_leave_similarity_null(embeddings_file):
    from qgis.core import QgsField

    from clay_qgis import compat, vector_cache
    from clay_qgis.schema import layer_fields

    embedding_set = vector_cache.load_embedding_set(embeddings_file)
    fields = layer_fields("chips")
    fields.append(QgsField("probability", compat.DOUBLE))
    rows = [3, 1]
    values = layers.score_values(rows, np.arange(12) / 12, np.arange(1, 13), {1: "positive"}, "probability")
    features = layers.features_for(embedding_set, fields, rows, values)
    assert [f["probability"] for f in features] == pytest.approx([3 / 12, 1 / 12])
    assert [f["rank"] for f in features] == [4, 2] and [f["example"] for f in features] == [None, "positive"]
    assert all(f["similarity"] is None or str(f["similarity"]) == "NULL" for f in features)
    with pytest.raises(ValueError, match="3 values for field 'rank', 2 rows"):
        layers.features_for(embedding_set, fields, rows, {"rank": [1, 2, 3]})
