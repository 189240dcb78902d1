"""clay_core.sources.files against a real HTTP server: a remote read that fails with 503 is really retried."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import torch

from clay_core.cli import main
from clay_core.sources import files
from tests.helpers.bad_inputs import write_geotiff
from tests.helpers.http_files import serve_folder

TINY = ["--model", "clay-v0-tiny", "--chip-size", "64", "--device", "cpu", "--workers", "0"]


def embed(url: str, output: Path) -> int:
    torch.manual_seed(0)  # a preset's random weights: the same in both runs, so their embeddings can be compared
    return main(["--progress", "none", "embed", url, "-o", str(output), *TINY])


def embedded_rows(path: Path):
    return pq.read_table(path).replace_schema_metadata(None)


def test_an_embed_recovers_from_a_server_answering_503_beyond_gdals_own_retries(tmp_path, monkeypatch, capfd, caplog):
    """The server answers 503 to as many requests as GDAL retries by itself, plus one: only clay's retry can
    succeed, and GDAL remembers the failed file as missing unless that retry bypasses its cache."""
    monkeypatch.setitem(files.GDAL_CLOUD_OPTIONS, "GDAL_HTTP_RETRY_DELAY", "0.01")  # the same retries, quicker
    folder = tmp_path / "served"
    folder.mkdir()
    write_geotiff(folder / "good.tif")
    with serve_folder(folder) as server:
        steady, busy = tmp_path / "steady.gpq", tmp_path / "busy.gpq"
        assert embed(server.url("good.tif", token=True), steady) == 0
        # Another name for the same bytes: nothing GDAL cached from the first run helps the second.
        (folder / "busy.tif").write_bytes((folder / "good.tif").read_bytes())
        server.busy("busy.tif", int(files.GDAL_CLOUD_OPTIONS["GDAL_HTTP_MAX_RETRY"]) + 1)
        code = embed(server.url("busy.tif", token=True), busy)
        err = capfd.readouterr().err
        assert code == 0, err
        assert server.busy_left["busy.tif"] == 0  # the 503s did happen, and clay saw one: only its retry succeeded
        assert any("transient error" in record.getMessage() for record in caplog.records)
    steady_rows, busy_rows = embedded_rows(steady), embedded_rows(busy)
    assert busy_rows.num_rows == steady_rows.num_rows == 4  # 128 x 128 px: 2 x 2 chips of 64 px
    different = {"source_url", "chip_id"}  # named after the file, by design
    for name in steady_rows.column_names:
        if name not in different:
            assert busy_rows.column(name).equals(steady_rows.column(name)), name
