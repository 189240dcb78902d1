"""clay:loadembeddings and clay:similarity through processing.run (headless) and the real qgis_process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clay_core.parquet import read_embeddings
from clay_qgis.session import SearchSession
from tests.helpers.qgis import run_qgis_process, write_embeddings_file


def numpy_cosine(vectors: np.ndarray, positives: list[int], negatives: list[int] = ()) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    query = unit[positives].mean(axis=0) - (unit[list(negatives)].mean(axis=0) if len(negatives) else 0)
    return unit @ (query / np.linalg.norm(query))


def numpy_centred(vectors: np.ndarray, positives: list[int], negatives: list[int] = ()) -> np.ndarray:
    """cos(u - m, q - m) (or cos(u - m, mean(pos) - mean(neg))) straight from the formula, in float64."""
    unit = vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    mean = unit.mean(axis=0)
    direction = unit[positives].mean(axis=0) - (unit[list(negatives)].mean(axis=0) if len(negatives) else mean)
    centred = unit - mean
    return centred @ direction / (np.linalg.norm(centred, axis=1) * np.linalg.norm(direction))


def run(algorithm: str, parameters: dict):
    import processing

    return processing.run(algorithm, parameters)


def scores_by_chip(layer) -> dict[str, tuple[float, int, object]]:
    return {f["chip_id"]: (f["similarity"], f["rank"], f["example"]) for f in layer.getFeatures()}


def test_load_embeddings_chips_and_patches(clay_provider, tmp_path):
    path = write_embeddings_file(tmp_path / "p.gpq", rows=2, cols=2, shape=(2, 2, 4))
    chips = run("clay:loadembeddings", {"INPUT": str(path), "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    assert chips.featureCount() == 4 and chips.crs().authid() == "EPSG:4326"
    assert "embeddings" not in chips.fields().names()
    patches = run("clay:loadembeddings", {"INPUT": str(path), "MODE": 1, "OUTPUT": str(tmp_path / "p.gpkg")})
    from qgis.core import QgsVectorLayer

    saved = QgsVectorLayer(patches["OUTPUT"], "p", "ogr")
    assert saved.featureCount() == 16
    assert sorted({(f["patch_row"], f["patch_col"]) for f in saved.getFeatures()}) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_load_embeddings_bad_file_is_a_processing_error(clay_provider, tmp_path):
    from qgis.core import QgsProcessingException

    bad = tmp_path / "bad.gpq"
    bad.write_text("not parquet")
    with pytest.raises(QgsProcessingException, match="not a readable Parquet file"):
        run("clay:loadembeddings", {"INPUT": str(bad), "OUTPUT": "TEMPORARY_OUTPUT"})


def test_similarity_by_chip_id_top_k(clay_provider, embeddings_file):
    data = read_embeddings(embeddings_file)
    result = run(
        "clay:similarity",
        {"INPUT": str(embeddings_file), "CHIP_IDS": data.chip_ids[4], "TOP_K": 5, "OUTPUT": "TEMPORARY_OUTPUT"},
    )["OUTPUT"]
    expected = numpy_centred(data.vectors, [4])  # centred is the default
    got = scores_by_chip(result)
    assert len(got) == 5
    best5 = [data.chip_ids[i] for i in np.argsort(-expected)[:5]]
    assert set(got) == set(best5)
    for chip_id, (score, rank, _example) in got.items():
        row = data.chip_ids.index(chip_id)
        assert score == pytest.approx(expected[row], abs=1e-5)
        assert rank == best5.index(chip_id) + 1
    assert got[data.chip_ids[4]][2] == "positive"


def test_gui_run_styles_the_loaded_output_and_releases_the_post_processor(clay_provider, embeddings_file):
    """As in the desktop: the output is loaded into the project and styled by StyleOnLoad, which then lets go
    of itself (and of the scores it holds) instead of living for the rest of the QGIS session."""
    import processing
    from qgis.core import QgsProject

    from clay_qgis import layers
    from clay_qgis.algorithms.base import StyleOnLoad

    before = len(StyleOnLoad.instances)
    data = read_embeddings(embeddings_file)
    try:
        result = processing.runAndLoadResults(
            "clay:similarity",
            {"INPUT": str(embeddings_file), "CHIP_IDS": data.chip_ids[2], "TOP_K": 4, "OUTPUT": "TEMPORARY_OUTPUT"},
        )
        loaded = QgsProject.instance().mapLayer(result["OUTPUT"])
        assert loaded is not None and loaded.featureCount() == 4
        assert loaded.renderer().type() == "graduatedSymbol"
        assert loaded.customProperty(layers.PATH_PROPERTY) == str(embeddings_file.resolve())
        assert len(StyleOnLoad.instances) == before
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_algorithm_and_map_tool_share_one_scoring_path(clay_provider, embeddings_file, monkeypatch):
    """clay:similarity and a click (SearchSession) go through the same query and scoring functions and
    give the same scores."""
    from clay_qgis import layers
    from clay_qgis import session as session_module
    from clay_qgis.schema import NEGATIVE

    calls = []
    for name in ("score_query",):
        original = getattr(session_module, name)
        monkeypatch.setattr(
            session_module, name, lambda *args, _f=original, _n=name, **kw: calls.append(_n) or _f(*args, **kw)
        )
    data = read_embeddings(embeddings_file)
    output = run(
        "clay:similarity",
        {
            "INPUT": str(embeddings_file),
            "CHIP_IDS": data.chip_ids[5],
            "NEGATIVE_CHIP_IDS": data.chip_ids[0],
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    assert calls == ["score_query"]
    session = SearchSession(layers.load_layer(embeddings_file))
    session.add_example(5)
    session.add_example(0, NEGATIVE)
    assert calls[1:] == ["score_query", "score_query"]
    by_algorithm = scores_by_chip(output)
    for row, chip_id in enumerate(data.chip_ids):
        assert by_algorithm[chip_id][0] == pytest.approx(float(session.scored.scores[row]), abs=1e-6)
        assert by_algorithm[chip_id][1] == session.scored.ranks[row]


def test_similarity_by_point_in_another_crs(clay_provider, embeddings_file):
    """A point given in UTM (EPSG:32633) selects the chip containing it; threshold keeps the best."""
    data = read_embeddings(embeddings_file)
    # chip row 1, col 2 of the fixture grid: centre at x0 + 2.5 * 1280, y0 - 1.5 * 1280
    x, y = 330000.0 + 2.5 * 1280, 5822040.0 - 1.5 * 1280
    result = run(
        "clay:similarity",
        {
            "INPUT": str(embeddings_file),
            "POINT": f"{x},{y} [EPSG:32633]",
            "USE_THRESHOLD": True,
            "THRESHOLD": 0.0,
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    row = data.chip_ids.index("33UUU_20170216_001_002")
    expected = numpy_centred(data.vectors, [row])
    got = scores_by_chip(result)
    assert set(got) == {data.chip_ids[i] for i in np.flatnonzero(expected >= 0.0)}
    assert got["33UUU_20170216_001_002"][1] == 1


def test_similarity_from_selected_features_with_negatives(clay_provider, embeddings_file):
    """Positives/negatives as (selected) features of the chips layer: matched by chip_id."""
    from qgis.core import QgsFeatureRequest, QgsProcessingFeatureSourceDefinition, QgsProject

    data = read_embeddings(embeddings_file)
    layer = run("clay:loadembeddings", {"INPUT": str(embeddings_file), "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    QgsProject.instance().addMapLayer(layer)
    try:
        by_id = {f["chip_id"]: f.id() for f in layer.getFeatures()}
        layer.selectByIds([by_id[data.chip_ids[i]] for i in (1, 6)])
        negatives = layer.materialize(QgsFeatureRequest().setFilterFids([by_id[data.chip_ids[9]]]))
        result = run(
            "clay:similarity",
            {
                "INPUT": str(embeddings_file),
                "POSITIVES": QgsProcessingFeatureSourceDefinition(layer.id(), selectedFeaturesOnly=True),
                "NEGATIVES": negatives,
                "RAW": True,
                "OUTPUT": "TEMPORARY_OUTPUT",
            },
        )["OUTPUT"]
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    expected = numpy_cosine(data.vectors, [1, 6], [9])
    got = scores_by_chip(result)
    for row, chip_id in enumerate(data.chip_ids):
        assert got[chip_id][0] == pytest.approx(expected[row], abs=1e-6)
    assert got[data.chip_ids[9]][2] == "negative" and got[data.chip_ids[6]][2] == "positive"


def test_features_without_chip_id_are_placed_by_geometry(clay_provider, embeddings_file):
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

    data = read_embeddings(embeddings_file)
    points = QgsVectorLayer("Point?crs=EPSG:32633", "clicks", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(330000 + 640, 5822040 - 2 * 1280 - 640)))  # row 2, col 0
    points.dataProvider().addFeatures([feature])
    result = run(
        "clay:similarity",
        {"INPUT": str(embeddings_file), "POSITIVES": points, "TOP_K": 1, "OUTPUT": "TEMPORARY_OUTPUT"},
    )["OUTPUT"]
    assert list(scores_by_chip(result)) == ["33UUU_20170216_002_000"]
    assert data.chip_ids.index("33UUU_20170216_002_000") == 8


def test_examples_from_another_model_give_a_dimension_error(clay_provider, tmp_path):
    from qgis.core import QgsProcessingException, QgsProject

    target = write_embeddings_file(tmp_path / "a.gpq", shape=(16,), model="model-a")
    other = write_embeddings_file(tmp_path / "b.gpq", shape=(32,), model="model-b")
    layer = run("clay:loadembeddings", {"INPUT": str(other), "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    from clay_qgis import layers, vector_cache

    layers.tag_layer(layer, vector_cache.load_embedding_set(other))
    QgsProject.instance().addMapLayer(layer)
    try:
        with pytest.raises(QgsProcessingException, match=r"32 values.*16.*different models"):
            run("clay:similarity", {"INPUT": str(target), "POSITIVES": layer.id(), "OUTPUT": "TEMPORARY_OUTPUT"})
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_layer_without_crs_is_refused_readably(clay_provider, embeddings_file):
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsFeature,
        QgsGeometry,
        QgsPointXY,
        QgsProcessingException,
        QgsVectorLayer,
    )

    points = QgsVectorLayer("Point", "no crs", "memory")
    points.setCrs(QgsCoordinateReferenceSystem())  # e.g. a shapefile without .prj
    assert not points.crs().isValid()
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(1, 1)))
    points.dataProvider().addFeatures([feature])
    with pytest.raises(QgsProcessingException, match="no valid CRS"):
        run("clay:similarity", {"INPUT": str(embeddings_file), "POSITIVES": points, "OUTPUT": "TEMPORARY_OUTPUT"})


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "no query"),
        ({"CHIP_IDS": "nope"}, "chip id 'nope' is not in"),
        ({"POINT": "0,0 [EPSG:4326]"}, "not inside any chip"),
    ],
)
def test_similarity_input_errors(clay_provider, embeddings_file, parameters, message):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=message):
        run("clay:similarity", {"INPUT": str(embeddings_file), "OUTPUT": "TEMPORARY_OUTPUT", **parameters})


def test_similarity_through_real_qgis_process(qgis_process_env, tmp_path):
    """The batch path users script: scores in the GeoPackage equal a numpy cosine of the stored vectors."""
    path = write_embeddings_file(tmp_path / "e.gpq", rows=3, cols=3, shape=(24,), seed=4)
    data = read_embeddings(path)
    out = tmp_path / "similar.gpkg"
    done = run_qgis_process(
        qgis_process_env,
        "--json",
        "run",
        "clay:similarity",
        "--",
        f"INPUT={path}",
        f"CHIP_IDS={data.chip_ids[2]}",
        f"NEGATIVE_CHIP_IDS={data.chip_ids[7]}",
        "RAW=true",
        f"OUTPUT={out}",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["results"]["OUTPUT"] == str(out)
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(str(out), "similar", "ogr")
    expected = numpy_cosine(data.vectors, [2], [7])
    got = scores_by_chip(layer)
    assert len(got) == 9
    for row, chip_id in enumerate(data.chip_ids):
        assert got[chip_id][0] == pytest.approx(expected[row], abs=1e-6)
        assert got[chip_id][1] == int(np.flatnonzero(np.argsort(-expected, kind="stable") == row)[0]) + 1


def test_similarity_searches_several_files_as_one(clay_provider, tmp_path):
    """Two files with the same chip ids (two dates): one search, centred on the mean of both, ids kept apart."""
    first = write_embeddings_file(tmp_path / "a.gpq", seed=1)
    second = write_embeddings_file(tmp_path / "b.gpq", seed=2)
    a, b = read_embeddings(first), read_embeddings(second)
    result = run(
        "clay:similarity",
        {
            "INPUT": str(first),
            "MORE_INPUTS": [str(second)],
            "CHIP_IDS": f"b.gpq:{b.chip_ids[3]}",
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    got = {(f["source_file"], f["chip_id"]): (f["similarity"], f["rank"], f["example"]) for f in result.getFeatures()}
    assert len(got) == 24
    expected = numpy_centred(np.concatenate([a.vectors, b.vectors]), [12 + 3])
    order = np.argsort(-expected, kind="stable")
    for row, key in enumerate([("a.gpq", c) for c in a.chip_ids] + [("b.gpq", c) for c in b.chip_ids]):
        assert got[key][0] == pytest.approx(expected[row], abs=1e-5)
        assert got[key][1] == int(np.flatnonzero(order == row)[0]) + 1
    assert got[("b.gpq", b.chip_ids[3])][2] == "positive" and not got[("a.gpq", a.chip_ids[3])][2]
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="in 2 files"):
        run(
            "clay:similarity",
            {
                "INPUT": str(first),
                "MORE_INPUTS": [str(second)],
                "CHIP_IDS": a.chip_ids[3],
                "OUTPUT": "TEMPORARY_OUTPUT",
            },
        )
