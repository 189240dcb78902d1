"""clay:classify, clay:cluster and clay:change through processing.run (headless) and the real qgis_process."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest

from clay_core.parquet import read_embeddings, write_geoparquet
from tests.helpers.embeddings import chip_grid, two_kinds_file
from tests.helpers.qgis import run, run_qgis_process


def test_classify_from_ids_and_a_labelled_point_layer(clay_provider, tmp_path):
    from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsPointXY, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant

    path = tmp_path / "e.gpq"
    _, records, vectors, kind = two_kinds_file(path, rows=4, cols=6)
    ids = [record.chip_id for record in records]
    result = run(
        "clay:classify",
        {
            "INPUT": str(path),
            "POSITIVE_IDS": f"{ids[0]},{ids[7]}",
            "NEGATIVE_IDS": f"{ids[5]},{ids[10]}",
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    got = {f["chip_id"]: (f["probability"], f["rank"], f["example"]) for f in result.getFeatures()}
    assert len(got) == len(records)
    predicted = np.array([got[chip][0] >= 0.5 for chip in ids])
    assert (predicted == kind).mean() > 0.9
    assert got[ids[0]][2] == "positive" and got[ids[5]][2] == "negative"
    assert sorted(rank for _, rank, _ in got.values()) == list(range(1, len(records) + 1))
    # labels as points in UTM with a text field: placed by the chip under them
    points = QgsVectorLayer("Point?crs=EPSG:32633", "labels", "memory")
    points.dataProvider().addAttributes([QgsField("class", QVariant.String)])
    points.updateFields()
    for row, value in ((1, "forest"), (8, "forest"), (4, "field"), (11, "field")):
        feature = QgsFeature(points.fields())
        x0, y0, x1, y1 = records[row].utm_bounds
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY((x0 + x1) / 2, (y0 + y1) / 2)))
        feature["class"] = value
        points.dataProvider().addFeatures([feature])
    result = run(
        "clay:classify",
        {
            "INPUT": str(path),
            "LABELS": points,
            "LABEL_FIELD": "class",
            "POSITIVE_VALUES": "forest",
            "TOP_K": 6,
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    best = [f["chip_id"] for f in result.getFeatures()]
    assert len(best) == 6 and all(kind[ids.index(chip)] for chip in best)


def test_classify_needs_both_classes(clay_provider, tmp_path):
    from qgis.core import QgsProcessingException

    path = tmp_path / "e.gpq"
    _, records, _, _ = two_kinds_file(path, rows=4, cols=6)
    with pytest.raises(QgsProcessingException, match="positive and negative"):
        run("clay:classify", {"INPUT": str(path), "POSITIVE_IDS": records[0].chip_id, "OUTPUT": "TEMPORARY_OUTPUT"})


def test_cluster_finds_the_two_kinds_and_styles_by_category(clay_provider, tmp_path):
    import processing
    from qgis.core import QgsProject

    path = tmp_path / "e.gpq"
    _, records, _, kind = two_kinds_file(path, rows=4, cols=6)
    try:
        result = processing.runAndLoadResults(
            "clay:cluster", {"INPUT": str(path), "K": 2, "SEED": 1, "OUTPUT": "TEMPORARY_OUTPUT"}
        )
        layer = QgsProject.instance().mapLayer(result["OUTPUT"])
        labels = {f["chip_id"]: f["cluster"] for f in layer.getFeatures()}
        found = np.array([labels[record.chip_id] for record in records])
        agreement = (found == kind).mean()
        assert max(agreement, 1 - agreement) > 0.9
        assert layer.renderer().type() == "categorizedSymbol" and layer.renderer().classAttribute() == "cluster"
        assert len(layer.renderer().categories()) == 2
        # clusters score nothing: no similarity/rank/example fields to mistake for scores
        assert layer.fields().names()[-3:] == ["source_file", "cluster", "cluster_distance"]
        assert not {"similarity", "rank", "example"} & set(layer.fields().names())
    finally:
        QgsProject.instance().removeAllMapLayers()
    again = run("clay:cluster", {"INPUT": str(path), "K": 2, "SEED": 1, "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    assert {f["chip_id"]: f["cluster"] for f in again.getFeatures()} == labels  # seeded: deterministic


def _two_dates(tmp_path):
    before = chip_grid(3, 3)
    rng = np.random.default_rng(1)
    first = rng.standard_normal((9, 2, 2, 6)).astype(np.float32)
    second = first + 0.01 * rng.standard_normal(first.shape).astype(np.float32)
    second[4, 0, 1] = -first[4, 0, 1]  # chip 4, patch (0, 1) changed
    meta = {"model": "test-model", "level": "patch", "embedding_shape": [2, 2, 6]}
    a = write_geoparquet(tmp_path / "before.gpq", before, first, meta)
    later = [record.__class__(**{**record.__dict__, "date": datetime.date(2018, 7, 1)}) for record in before]
    order = [3, 8, 1, 4, 0, 6, 5, 7]  # shuffled, chip 2 missing
    b = write_geoparquet(tmp_path / "after.gpq", [later[i] for i in order], second[order], meta)
    return before, a, b


def test_change_per_chip_and_per_patch(clay_provider, tmp_path):
    before, a, b = _two_dates(tmp_path)
    chips = run("clay:change", {"BEFORE": str(a), "AFTER": str(b), "OUTPUT": "TEMPORARY_OUTPUT"})
    layer = chips["OUTPUT"]
    assert chips["MATCHED"] == 8 and chips["ONLY_BEFORE"] == 1 and chips["ONLY_AFTER"] == 0
    features = list(layer.getFeatures())
    assert features[0]["chip_id"] == before[4].chip_id  # most changed first
    assert features[0]["date_after"].toPyDate() == datetime.date(2018, 7, 1)
    assert all(f["change"] < 0.01 for f in features[1:])
    assert not {"similarity", "rank", "example"} & set(layer.fields().names())  # change scores no similarity
    patches = run("clay:change", {"BEFORE": str(a), "AFTER": str(b), "MODE": 1, "OUTPUT": "TEMPORARY_OUTPUT"})
    top = next(iter(patches["OUTPUT"].getFeatures()))
    assert patches["MATCHED"] == 32
    assert (top["chip_id"], top["patch_row"], top["patch_col"]) == (before[4].chip_id, 0, 1)
    assert top["change"] == pytest.approx(2.0, abs=0.02)


def test_change_through_real_qgis_process(qgis_process_env, tmp_path):
    before, a, b = _two_dates(tmp_path)
    out = tmp_path / "change.gpkg"
    done = run_qgis_process(
        qgis_process_env, "--json", "run", "clay:change", "--", f"BEFORE={a}", f"AFTER={b}", f"OUTPUT={out}"
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["results"]["MATCHED"] == 8
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(str(out), "change", "ogr")
    values = {f["chip_id"]: f["change"] for f in layer.getFeatures()}
    data_a, data_b = read_embeddings(a), read_embeddings(b)
    row_b = data_b.chip_ids.index(before[4].chip_id)
    va, vb = data_a.vectors[4], data_b.vectors[row_b]
    assert values[before[4].chip_id] == pytest.approx(1 - va @ vb / np.linalg.norm(va) / np.linalg.norm(vb), abs=1e-5)
