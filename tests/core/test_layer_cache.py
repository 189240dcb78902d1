"""clay_core.layer_cache and `clay layer-cache`: an embeddings file as flat numpy arrays that read back equal,
with a folder name that changes when the file changes, made without importing torch."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clay_core import layer_cache
from clay_core.errors import ClayInputError
from clay_core.parquet import read_embeddings, write_geoparquet
from clay_core.sources.base import ChipRecord
from tests.helpers.cli import clay_env, json_events, result_of, run_clay


def write_file(path: Path, n: int = 6, shape: tuple[int, ...] = (2, 2, 3), seed: int = 0, **kwargs) -> Path:
    records = [
        ChipRecord(
            chip_id=f"33UUU_{i:03d}",
            source_url=f"/s/{i}.tif",
            date=datetime.date(2021, 6, 1 + i),
            epsg=32633,
            utm_bounds=(300000.0 + 1280 * i, 5898760.0, 301280.0 + 1280 * i, 5900040.0),
            row=0,
            col=i,
            mgrs=None if i == 2 else "33UUU",
            size=128,
            resolution_m=10.0,
        )
        for i in range(n)
    ]
    vectors = np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)
    return write_geoparquet(
        path, records, vectors, {"model": "m", "level": "patch"}, nodata_fractions=[0.1 * i for i in range(n)], **kwargs
    )


def assert_same_rows(got: layer_cache.LayerRows, expected: layer_cache.LayerRows) -> None:
    np.testing.assert_array_equal(np.asarray(got.vectors), expected.vectors)
    assert got.columns == expected.columns
    assert got.wkb == expected.wkb
    assert got.shape_per_row == expected.shape_per_row
    assert got.metadata == expected.metadata and got.crs == expected.crs
    np.testing.assert_array_equal(got.utm_bbox, expected.utm_bbox)


@pytest.mark.parametrize("explode", [False, True])
def test_cache_reads_back_what_pyarrow_reads(tmp_path, explode):
    source = write_file(tmp_path / "e.gpq", explode_patches=explode)
    rows = layer_cache.from_embedding_table(read_embeddings(source))
    assert isinstance(rows.columns["date"][0], datetime.date) and rows.utm_bbox.shape == (len(rows), 4)
    assert ("patch_row" in rows.columns) == explode
    folder = layer_cache.write_layer_cache(rows, tmp_path / "cache", source)
    assert_same_rows(layer_cache.read_layer_cache(folder), rows)
    assert layer_cache.is_current(folder, source)


def test_missing_values_stay_missing(tmp_path):
    table = pa.table(
        {
            "embeddings": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], pa.list_(pa.float32(), 2)),
            "geometry": pa.array([b"\x01\x01\x00\x00\x00" + bytes(16)] * 3),
            "chip_id": ["a", None, "c"],
            "row": pa.array([1, None, 3], pa.int32()),
            "nodata_fraction": pa.array([None, 0.5, None], pa.float32()),
            "date": pa.array([datetime.date(2020, 1, 1), None, datetime.date(2020, 1, 3)]),
        }
    )
    source = tmp_path / "other-tool.parquet"
    pq.write_table(table, source)
    rows = layer_cache.from_embedding_table(read_embeddings(source))
    back = layer_cache.read_layer_cache(layer_cache.write_layer_cache(rows, tmp_path / "c", source))
    assert back.columns == {
        "chip_id": ["a", None, "c"],
        "row": [1, None, 3],
        "nodata_fraction": [None, 0.5, None],
        "date": [datetime.date(2020, 1, 1), None, datetime.date(2020, 1, 3)],
    }
    assert back.crs is None and back.utm_bbox is None and back.shape_per_row == (2,)


def test_a_changed_file_gets_another_folder_and_the_old_one_is_stale(tmp_path):
    source = write_file(tmp_path / "e.gpq")
    name = layer_cache.cache_name(source)
    folder = layer_cache.write_layer_cache(
        layer_cache.from_embedding_table(read_embeddings(source)), tmp_path / name, source
    )
    assert layer_cache.cache_name(source) == name
    write_file(tmp_path / "e.gpq", seed=1, overwrite=True)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # a later save, whatever the clock
    assert layer_cache.cache_name(source) != name
    assert not layer_cache.is_current(folder, source)


def test_a_folder_without_its_manifest_is_not_a_cache(tmp_path):
    source = write_file(tmp_path / "e.gpq")
    folder = layer_cache.write_layer_cache(
        layer_cache.from_embedding_table(read_embeddings(source)), tmp_path / "c", source
    )
    (folder / layer_cache.MANIFEST).unlink()
    assert not layer_cache.is_current(folder, source)
    with pytest.raises(Exception, match="not a Clay layer cache"):
        layer_cache.read_layer_cache(folder)


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'torch':
            raise ImportError('torch is blocked in this test')
sys.meta_path.insert(0, Block())
from clay_core.cli import main
code = main(sys.argv[1:])
assert not any(m.split('.')[0] == 'torch' for m in sys.modules), 'torch was imported'
sys.exit(code)
"""


def test_clay_layer_cache_command_runs_without_torch(tmp_path):
    source = write_file(tmp_path / "e.gpq")
    folder = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "--progress", "json", "layer-cache", str(source), "-o", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clay_env(),
    )
    assert result.returncode == 0, result.stderr
    events = json_events(result.stdout)
    assert events[-1]["event"] == "result" and result_of(events)["rows"] == 6
    assert_same_rows(layer_cache.read_layer_cache(folder), layer_cache.from_embedding_table(read_embeddings(source)))


def test_clay_layer_cache_bad_input_is_exit_2(tmp_path):
    (tmp_path / "x.gpq").write_text("nope")
    result = run_clay("layer-cache", str(tmp_path / "x.gpq"), "-o", str(tmp_path / "c"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "c").exists()


def test_a_folder_of_other_files_is_refused_and_kept(tmp_path):
    source = write_file(tmp_path / "e.gpq")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    rows = layer_cache.from_embedding_table(read_embeddings(source))
    with pytest.raises(ClayInputError, match="not a Clay layer cache .*notes.txt"):
        layer_cache.write_layer_cache(rows, mine, source)
    assert (mine / "notes.txt").read_text() == "precious" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    with pytest.raises(ClayInputError, match="is a file"):
        layer_cache.write_layer_cache(rows, source, source)
    assert layer_cache.is_current(layer_cache.write_layer_cache(rows, mine / "new", source), source)


def test_an_older_cache_and_an_empty_folder_are_replaced(tmp_path):
    source = write_file(tmp_path / "e.gpq")
    rows = layer_cache.from_embedding_table(read_embeddings(source))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert layer_cache.is_current(layer_cache.write_layer_cache(rows, empty, source), source)
    write_file(tmp_path / "e.gpq", n=4, seed=1, overwrite=True)
    newer = layer_cache.from_embedding_table(read_embeddings(source))
    assert_same_rows(layer_cache.read_layer_cache(layer_cache.write_layer_cache(newer, empty, source)), newer)


def test_clay_layer_cache_into_a_folder_of_other_files_is_exit_2_and_keeps_them(tmp_path):
    source = write_file(tmp_path / "e.gpq")
    result = run_clay("layer-cache", str(source), "-o", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("clay: error: ") and "new or empty folder" in result.stderr
    assert source.exists() and read_embeddings(source) is not None


def test_clay_layer_cache_reports_the_folder_it_wrote_as_an_absolute_path(tmp_path, monkeypatch, capsys):
    from clay_core.cli import main

    write_file(tmp_path / "e.gpq")
    monkeypatch.chdir(tmp_path)
    assert main(["--progress", "none", "layer-cache", "e.gpq", "-o", "cache"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 6 rows to {tmp_path / 'cache'}"
