"""`clay cluster` end to end: every row gets a cluster, the same seed gives the same file."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from clay_core.cli import main
from tests.helpers.embeddings import two_kinds_file


def test_cluster_two_kinds(tmp_path, capsys):
    path, records, vectors, kind = two_kinds_file(tmp_path / "e.gpq")
    out, again = tmp_path / "c.gpq", tmp_path / "c2.gpq"
    assert main(["--progress", "none", "cluster", str(path), "-k", "2", "--seed", "3", "-o", str(out)]) == 0
    assert main(["--progress", "none", "cluster", str(path), "-k", "2", "--seed", "3", "-o", str(again)]) == 0
    table = pq.read_table(out)
    assert table.column("chip_id").to_pylist() == [r.chip_id for r in records]  # input order
    clusters = table.column("cluster").to_numpy()
    agreement = np.mean(clusters == kind)
    assert max(agreement, 1 - agreement) > 0.9
    assert table.column("cluster").equals(pq.read_table(again).column("cluster"))
    np.testing.assert_array_equal(np.stack(table.column("embeddings").to_numpy(zero_copy_only=False)), vectors)
    assert "2 clusters of 48 rows" in capsys.readouterr().out
    assert main(["cluster", str(path), "-k", "0", "-o", str(tmp_path / "x.gpq")]) == 2
    assert main(["cluster", str(path), "-k", "49", "-o", str(tmp_path / "x.gpq")]) == 2
    assert not (tmp_path / "x.gpq").exists()
