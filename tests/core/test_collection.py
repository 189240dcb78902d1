"""clay_core.collection: many real GeoParquet files read as one set of rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from clay_core import collection
from clay_core.parquet import write_geoparquet
from tests.helpers.embeddings import chip_grid


def test_each_file_footer_is_read_once(tmp_path: Path, monkeypatch) -> None:
    """Column names, row counts, widths and metadata come from one footer read; the only other open decodes
    the vectors (counted on the real ParquetFile, which still does the reading)."""
    paths = [
        write_geoparquet(tmp_path / f"{name}.gpq", chip_grid(2, 2), np.full((4, 3), value, np.float32), {"model": "m"})
        for name, value in (("a", 1.0), ("b", 2.0))
    ]
    opened: Counter[str] = Counter()
    real = pq.ParquetFile

    def counting(source, *args, **kwargs):
        opened[Path(source).name] += 1
        return real(source, *args, **kwargs)

    real_schema = pq.read_schema

    def counting_schema(source, *args, **kwargs):  # the results-or-inputs check of a search over several files
        opened[Path(source).name + " schema"] += 1
        return real_schema(source, *args, **kwargs)

    monkeypatch.setattr(collection.pq, "ParquetFile", counting)
    monkeypatch.setattr(collection.pq, "read_schema", counting_schema)
    collection.read_collection(paths[:1])
    assert opened == {"a.gpq": 2}  # one file alone: no results-or-inputs check
    opened.clear()
    read = collection.read_collection(paths)
    assert opened == {"a.gpq": 2, "b.gpq": 2, "a.gpq schema": 1, "b.gpq schema": 1}
    assert len(read) == 8 and read.vectors[:4].max() == 1.0 and read.vectors[4:].min() == 2.0
    assert "embeddings" not in read.table.column_names
    assert read.table.column_names[-1] == collection.SOURCE_FILE
    assert {"chip_id", "geometry", "date", "utm_bbox"} <= set(read.table.column_names)


def test_earlier_results_are_left_out_of_a_search_over_embeddings(tmp_path: Path, capsys) -> None:
    """`clay similar out/ -o out/s.gpq` run twice searches the embeddings, not the first run's matches (which
    carry the same vectors and would show every chip twice); so does `out/*.gpq` expanded by the shell, and
    `clay change` output (no vectors) is left out too. Results given alone are searched."""
    from clay_core.cli import main

    vectors = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    embeddings = write_geoparquet(tmp_path / "a.gpq", chip_grid(2, 2), vectors, {"model": "m"})
    chip = collection.read_collection([embeddings]).chip_ids[0]
    similar = ["--progress", "none", "similar", str(tmp_path), "--chip", chip, "-o"]
    assert main([*similar, str(tmp_path / "s1.gpq")]) == 0
    assert main(["--progress", "none", "change", str(embeddings), str(embeddings), "-o", str(tmp_path / "c.gpq")]) == 0
    assert main([*similar, str(tmp_path / "s2.gpq")]) == 0
    summaries = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote")]
    assert "4 rows in 1 file(s)" in summaries[-1]
    assert pq.read_table(tmp_path / "s2.gpq").num_rows == 4
    every_file = sorted(tmp_path.glob("*.gpq"))
    assert len(every_file) == 4
    assert collection.expand_inputs([tmp_path]) == [embeddings]
    assert collection.expand_inputs([tmp_path / "*.gpq"]) == [embeddings]
    assert collection.expand_inputs(every_file) == [embeddings]  # the shell's expansion of out/*.gpq
    results = [tmp_path / "s1.gpq", tmp_path / "s2.gpq"]
    assert collection.expand_inputs(results) == results
