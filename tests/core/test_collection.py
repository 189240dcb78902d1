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

    monkeypatch.setattr(collection.pq, "ParquetFile", counting)
    read = collection.read_collection(paths)
    assert opened == {"a.gpq": 2, "b.gpq": 2}
    assert len(read) == 8 and read.vectors[:4].max() == 1.0 and read.vectors[4:].min() == 2.0
    assert "embeddings" not in read.table.column_names
    assert read.table.column_names[-1] == collection.SOURCE_FILE
    assert {"chip_id", "geometry", "date", "utm_bbox"} <= set(read.table.column_names)
