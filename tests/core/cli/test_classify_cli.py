"""`clay classify` end to end on real GeoParquet files: ids, points and a labelled point file."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from clay_core.cli import main
from tests.helpers.cli import json_events, result_of
from tests.helpers.embeddings import two_kinds_file


def test_classify_from_chip_ids_writes_probabilities_best_first(tmp_path, capsys):
    path, records, _, kind = two_kinds_file(tmp_path / "e.gpq")
    out = tmp_path / "p.gpq"
    positives = [records[i].chip_id for i in np.flatnonzero(kind)[:3]]
    negatives = [records[i].chip_id for i in np.flatnonzero(~kind)[:3]]
    args = ["--progress", "none", "classify", str(path), "-o", str(out)]
    for chip in positives:
        args += ["--positive", chip]
    for chip in negatives:
        args += ["--negative", chip]
    assert main(args) == 0
    table = pq.read_table(out)
    assert table.num_rows == len(records)
    probability = table.column("probability").to_numpy()
    assert (np.diff(probability) <= 0).all()
    truth = {records[i].chip_id: bool(kind[i]) for i in range(len(records))}
    predicted = {chip: p >= 0.5 for chip, p in zip(table.column("chip_id").to_pylist(), probability, strict=True)}
    assert np.mean([predicted[chip] == truth[chip] for chip in truth]) > 0.9
    labels = dict(zip(table.column("chip_id").to_pylist(), table.column("label").to_pylist(), strict=True))
    assert {labels[c] for c in positives} == {"positive"} and {labels[c] for c in negatives} == {"negative"}
    assert "fitted on 3 positive / 3 negative" in capsys.readouterr().out


def test_classify_from_a_labelled_point_file(tmp_path, capsys):
    import geopandas
    from shapely.geometry import Point

    path, records, _, kind = two_kinds_file(tmp_path / "e.gpq")
    chosen = [0, 1, 9, 6, 7, 14, 40]
    points = [Point(*records[i].center_lonlat) for i in chosen] + [Point(0.0, 0.0)]  # the last: outside
    labels = ["forest" if kind[i] else "field" for i in chosen] + ["forest"]
    geopandas.GeoDataFrame({"class": labels}, geometry=points, crs=4326).to_file(tmp_path / "labels.gpkg")
    out = tmp_path / "p.gpq"
    assert (
        main(
            [
                "--progress",
                "json",
                "classify",
                str(path),
                "--labels",
                str(tmp_path / "labels.gpkg"),
                "--label-field",
                "class",
                "--positive-value",
                "forest",
                "--top",
                "5",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    payload = result_of(json_events(capsys.readouterr().out))
    assert payload["labels_outside_chips"] == 1 and payload["positives"] + payload["negatives"] == len(chosen)
    table = pq.read_table(out)
    assert table.num_rows == 5
    by_id = {record.chip_id: bool(kind[i]) for i, record in enumerate(records)}
    assert all(by_id[chip] for chip in table.column("chip_id").to_pylist())


def test_classify_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    path, records, _, _ = two_kinds_file(tmp_path / "e.gpq")
    out = tmp_path / "p.gpq"
    assert main(["classify", str(path), "--positive", records[0].chip_id, "-o", str(out)]) == 2
    assert "positive and negative" in capsys.readouterr().err
    assert main(["classify", str(path), "--labels", str(tmp_path / "none.gpkg"), "-o", str(out)]) == 2
    assert (
        main(
            [
                "classify",
                str(path),
                "--positive",
                records[0].chip_id,
                "--negative",
                records[1].chip_id,
                "--l2",
                "0",
                "-o",
                str(out),
            ]
        )
        == 2
    )
    assert not out.exists()
