"""clay_qgis.vector_cache: each embeddings file read once, re-read when it changes; the patch view."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from clay_qgis import layers, vector_cache


@pytest.fixture(autouse=True)
def empty_cache(qgis_app):
    from clay_qgis import vector_cache

    vector_cache.clear_cache()


def test_vectors_are_cached_per_file_and_reloaded_when_it_changes(tmp_path, make_embeddings):
    path = make_embeddings(tmp_path / "e.gpq")
    first = vector_cache.load_embedding_set(path)
    assert vector_cache.load_embedding_set(path) is first
    make_embeddings(path, seed=9, overwrite=True)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse clocks
    second = vector_cache.load_embedding_set(path)
    assert second is not first
    assert not np.allclose(second.index.vectors, first.index.vectors)


def test_patch_view_has_one_feature_per_patch_inside_its_chip(tmp_path, make_embeddings):
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
        vector_cache.load_embedding_set(make_embeddings(tmp_path / "m.gpq"), "patches")


def test_crs_from_geo_metadata_crs84_projjson_and_nonsense():
    from clay_core.errors import ClayInputError

    assert vector_cache.crs_from_geo(None).authid() == "EPSG:4326"  # GeoParquet's default is OGC:CRS84
    assert vector_cache.crs_from_geo({"id": {"authority": "OGC", "code": "CRS84"}}).authid() == "EPSG:4326"
    from pyproj import CRS  # the test's side only: the plugin reads PROJJSON through QGIS

    utm = vector_cache.crs_from_geo(CRS.from_epsg(32633).to_json_dict())  # PROJJSON, as GeoParquet writes it
    assert utm.isValid() and "32633" in utm.authid() + utm.toWkt()
    assert vector_cache.crs_from_geo("EPSG:32633").authid() == "EPSG:32633"
    with pytest.raises(ClayInputError, match="not understood by QGIS/PROJ"):
        vector_cache.crs_from_geo("no such crs")
