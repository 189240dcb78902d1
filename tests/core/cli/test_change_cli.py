"""`clay change` end to end: chips matched by footprint across files written in different orders."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow.parquet as pq

from clay_core.cli import main
from clay_core.parquet import read_embeddings, write_geoparquet
from tests.helpers.embeddings import chip_grid


def test_change_matches_by_footprint_per_chip_and_per_patch(tmp_path, capsys):
    before = chip_grid(3, 3)
    after = chip_grid(3, 3, date=datetime.date(2018, 6, 1))
    rng = np.random.default_rng(0)
    first = rng.standard_normal((9, 2, 2, 4)).astype(np.float32)  # patch level: (h, w, d)
    second = first.copy()
    second[4, 1, 0] = -second[4, 1, 0]  # chip 4 changed in one patch
    meta = {"model": "m", "level": "patch", "embedding_shape": [2, 2, 4]}
    a = write_geoparquet(tmp_path / "a.gpq", before, first, meta)
    order = [8, 7, 6, 5, 4, 3, 2, 1]  # reversed, chip 0 missing: row order means nothing
    b = write_geoparquet(tmp_path / "b.gpq", [after[i] for i in order], second[order], meta)
    out = tmp_path / "change.gpq"
    assert main(["--progress", "none", "change", str(a), str(b), "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 8
    assert table.column("chip_id").to_pylist()[0] == before[4].chip_id  # most changed first
    changes = dict(zip(table.column("chip_id").to_pylist(), table.column("change").to_numpy(), strict=True))
    assert all(abs(value) < 1e-6 for chip, value in changes.items() if chip != before[4].chip_id)
    assert table.column("date_after").to_pylist()[0] == datetime.date(2018, 6, 1)
    assert "only before" in capsys.readouterr().out
    patches = tmp_path / "patches.gpq"
    assert main(["--progress", "none", "change", str(a), str(b), "--patches", "-o", str(patches)]) == 0
    table = pq.read_table(patches)
    assert table.num_rows == 8 * 4
    top = table.slice(0, 1).to_pylist()[0]
    assert (top["chip_id"], top["patch_row"], top["patch_col"]) == (before[4].chip_id, 1, 0)
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == f"  2.0000  {before[4].chip_id} patch 1,0"  # which patch, not the chip id 4 times over
    assert top["change"] == np.float32(2.0) or abs(top["change"] - 2.0) < 1e-6
    assert read_embeddings  # the output is GeoParquet with geometry
    assert b"geo" in pq.read_schema(patches).metadata


def test_change_between_other_places_is_one_line(tmp_path, capsys):
    meta = {"model": "m", "level": "mean"}
    a = write_geoparquet(tmp_path / "a.gpq", chip_grid(1, 2), np.ones((2, 4), np.float32), meta)
    far = [record for record in chip_grid(1, 4)[2:]]
    b = write_geoparquet(tmp_path / "b.gpq", far, np.ones((2, 4), np.float32), meta)
    assert main(["change", str(a), str(b), "-o", str(tmp_path / "c.gpq")]) == 2
    assert "different places" in capsys.readouterr().err
    assert main(["change", str(a), str(a), "--patches", "-o", str(tmp_path / "c.gpq")]) == 2
    assert "patch" in capsys.readouterr().err
