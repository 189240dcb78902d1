"""A source URL that carries a secret (user:password@, ?token=) is read with it, and the secret is then in
nothing the run writes or prints: the GeoParquet (its rows and its `clay` footer), the failures sidecar, the
resume folder of an interrupted run (parts, job.json, lock), a training checkpoint, the progress bar's lines,
the JSON-lines events and the one-line errors. Every run here goes through the real command or job, reading
from a local HTTP server that refuses requests without the secret (tests/helpers/http_files.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clay_core.cli import main
from clay_core.embed_parts import parts_dir_for
from tests.helpers.bad_inputs import write_geotiff
from tests.helpers.http_files import SECRETS, USER, FileServer, serve_folder

TINY = ["--model", "clay-v0-tiny", "--chip-size", "64", "--device", "cpu", "--workers", "0"]


def assert_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data, f"{secret!r} in {where}"


def assert_no_secret_in_files(folder: Path) -> list[Path]:
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    for path in files:
        assert_no_secret(path.read_bytes(), str(path))
    return files


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[FileServer]:
    """good.tif (8 chips of 64 px) and half.tif (its lower half cut off: 4 chips read, 4 fail)."""
    folder = tmp_path_factory.mktemp("served")
    write_geotiff(folder / "good.tif")
    half = write_geotiff(folder / "half.tif", width=128, height=256)
    half.write_bytes(half.read_bytes()[: int(half.stat().st_size * 0.55)])
    with serve_folder(folder) as running:
        yield running


@pytest.mark.parametrize("progress", ["bar", "json", "none"])
def test_a_partly_failed_run_names_its_source_without_credentials(progress, server, tmp_path, capfd):
    source = server.url("half.tif", userinfo=True)
    output = tmp_path / "half.gpq"
    code = main(["--progress", progress, "embed", source, "-o", str(output), *TINY])
    out, err = capfd.readouterr()
    assert code == 2, err  # 4 of 8 chips failed: written, listed, exit 2
    assert_no_secret(out, "stdout")
    assert_no_secret(err, "stderr")
    assert "chips failed" in out + err and "127.0.0.1" in out + err  # the message still says which source
    files = assert_no_secret_in_files(tmp_path)
    assert [path.name for path in files] == ["half.gpq", "half.gpq.failures.json"]
    sidecar = json.loads((tmp_path / "half.gpq.failures.json").read_text())
    assert sidecar["chips_failed"] == 4 and all("127.0.0.1" in f["reason"] for f in sidecar["failures"])
    table = pq.read_table(output)
    assert table.num_rows == 4
    public = f"http://127.0.0.1:{server.port}/half.tif"
    assert set(table.column("source_url").to_pylist()) == {public}
    clay = json.loads(table.schema.metadata[b"clay"])
    assert clay["sources"] == [public]
    assert USER not in json.dumps(clay)


def test_the_footer_names_a_token_url_without_its_token(server, tmp_path, capfd):
    output = tmp_path / "good.gpq"
    assert main(["--progress", "json", "embed", server.url("good.tif", token=True), "-o", str(output), *TINY]) == 0
    out, err = capfd.readouterr()
    assert_no_secret(out + err, "the run's output")
    assert_no_secret_in_files(tmp_path)
    clay = json.loads(pq.read_schema(output).metadata[b"clay"])
    assert clay["sources"] == [f"http://127.0.0.1:{server.port}/good.tif?style=x"]


@pytest.mark.parametrize("progress", ["bar", "json", "none"])
def test_the_one_line_error_quotes_the_url_without_credentials(progress, server, tmp_path, capfd):
    missing = server.url("missing.tif", token=True).replace("://", f"://{USER}:{SECRETS[0]}@")
    code = main(["--progress", progress, "embed", missing, "-o", str(tmp_path / "x.gpq"), *TINY])
    out, err = capfd.readouterr()
    assert code == 2
    assert_no_secret(out + err, "the error")
    assert "missing.tif" in out + err  # (GDAL says 404 the first time, "does not exist" from its cache after)
    assert not list(tmp_path.iterdir())


def test_an_argument_error_quoting_the_url_has_no_credentials(server, capfd):
    # The URL given where a number belongs: argparse quotes the value it rejects.
    code = main(["embed", "a.tif", "-o", "x.gpq", "--chip-size", server.url("a.tif", token=True, userinfo=True)])
    err = capfd.readouterr().err
    assert code == 2 and "--chip-size" in err and "a.tif" in err
    assert_no_secret(err, "the usage error")


class StopAtTheEnd:
    """A reporter whose last progress step is a Ctrl+C: the run stops with its parts written, as when killed."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.total: int | None = None
        self.done = 0

    def start(self, total, message=""):
        self.total, self.done = total, 0

    def advance(self, n=1, message=""):
        self.done += n
        if self.total is not None and self.done >= self.total:
            raise KeyboardInterrupt

    def log(self, message, level="info"):
        self.lines.append(message)

    def result(self, result): ...
    def error(self, message, kind="internal"): ...
    def close(self): ...


def test_an_interrupted_run_keeps_no_credentials_in_its_resume_folder(server, tmp_path):
    from clay_core.embed import EmbedOptions
    from clay_core.embed_job import EmbedJob

    output = tmp_path / "half.gpq"
    job = EmbedJob(
        sources=(server.url("half.tif", token=True, userinfo=True),),
        output=output,
        preset="clay-v0-tiny",
        chip_size=64,
        device="cpu",
        options=EmbedOptions(workers=0, batch_size=8),  # one batch: the good and the failed chips in one part
    )
    reporter = StopAtTheEnd()
    with pytest.raises(KeyboardInterrupt):
        job.run(reporter)
    folder = parts_dir_for(output)
    files = assert_no_secret_in_files(tmp_path)
    names = {path.name for path in files}
    assert {"job.json", "lock"} <= names and any(name.startswith("part-") for name in names), names
    failed = [
        reason
        for part in folder.glob("part-*.parquet")
        for _, reason in json.loads(pq.read_schema(part).metadata[b"clay_part"]).get("failed", [])
    ]
    assert len(failed) == 4 and all("127.0.0.1" in reason for reason in failed), failed
    assert_no_secret("\n".join(reporter.lines), "the log")
    assert any("skipped chip" in line for line in reporter.lines)


@pytest.mark.slow
def test_the_retry_warning_of_a_busy_server_has_no_credentials(server, tmp_path):
    """GDAL retries a 503 itself (4 times, ~7.5 s), then clay_core's retry logs a warning and tries again. The
    warning reaches stderr through Python logging's own handler: a subprocess, where pytest adds none."""
    import subprocess
    import sys

    server.busy("good.tif", 5)
    source = server.url("good.tif", token=True, userinfo=True)
    output = tmp_path / "busy.gpq"
    command = [sys.executable, "-m", "clay_core", "--progress", "none", "embed", source, "-o", str(output), *TINY]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    # The retry may still fail: GDAL 3.6 remembers the failed file ("does not exist") until its cache clears.
    assert done.returncode in (0, 2), done.stderr
    assert "transient error on" in done.stderr and "503" in done.stderr, done.stderr
    assert_no_secret(done.stdout + done.stderr, "the run's output")
    assert_no_secret_in_files(tmp_path)


def test_the_debug_traceback_has_no_credentials(server, tmp_path, capfd, monkeypatch):
    """--debug prints the traceback of an internal error, whose message may quote the source."""
    import clay_core.embed

    source = server.url("good.tif", token=True, userinfo=True)

    def broken(sources, *args, **kwargs):
        raise ZeroDivisionError(f"a bug while reading {source}")

    monkeypatch.setattr(clay_core.embed, "embed_sources", broken)
    code = main(["--debug", "--progress", "none", "embed", source, "-o", str(tmp_path / "x.gpq"), *TINY])
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" in err and "ZeroDivisionError: a bug while reading http://127.0.0.1" in err
    assert_no_secret(err, "the traceback")


def test_a_training_checkpoint_names_its_sources_without_credentials(server, tmp_path, capfd):
    """A checkpoint is a file people share; it keeps its run's settings, sources included."""
    import torch

    write_geotiff(server.folder / "train.tif", bands=("B02", "B03", "B04", "B08"))
    tiny = "--preset clay-v0-tiny --image-size 32 --patch-size 8 --dim 32 --depth 1 --heads 2 --dim-head 16"
    tiny += " --mlp-ratio 2 --decoder-dim 16 --decoder-depth 1 --decoder-heads 2 --decoder-dim-head 8"
    checkpoint = tmp_path / "t.ckpt"
    source = server.url("train.tif", token=True, userinfo=True)
    arguments = ["train", source, "-o", str(checkpoint), *tiny.split(), "--device", "cpu", "--threads", "1"]
    arguments += ["--steps", "2", "--batch-size", "2", "--chip-size", "32", "--workers", "0"]
    assert main(["--progress", "json", *arguments]) == 0
    out, err = capfd.readouterr()
    assert_no_secret(out + err, "the run's output")
    assert_no_secret_in_files(tmp_path)
    settings = torch.load(checkpoint, weights_only=True)["clay_train"]["settings"]
    assert settings["sources"] == [f"http://127.0.0.1:{server.port}/train.tif?style=x"]
