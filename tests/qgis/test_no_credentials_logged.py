"""clay:embed on a raster layer whose data source carries a secret (a GDAL /vsicurl/ URL with user:password@
and ?token=): the worker reads it with the secret (the local server refuses requests without it), and the secret
is in nothing the Processing log shows (the worker command line, warnings, progress, the error), nor in the
files the run writes. Real QGIS, real Processing, real worker. Also clay:setupruntime's installer log, whose
PIP_ARGS may name a private package index with its password."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.bad_inputs import write_geotiff
from tests.helpers.http_files import SECRETS, serve_folder
from tests.helpers.qgis import base_parameters, run


class RecordingFeedback:
    """Everything an algorithm reports, with QGIS's own text log of it (the Processing log's text)."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class Recording(QgsProcessingFeedback):
            def __init__(self) -> None:
                super().__init__()
                self.progress_texts: list[str] = []

            def setProgressText(self, text: str) -> None:  # noqa: N802 - QGIS API
                self.progress_texts.append(text)
                super().setProgressText(text)

        return Recording()


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}: {text}"


@pytest.fixture
def served(tmp_path: Path):
    folder = tmp_path / "served"
    folder.mkdir()
    write_geotiff(folder / "good.tif")
    half = write_geotiff(folder / "half.tif", width=128, height=256)
    half.write_bytes(half.read_bytes()[: int(half.stat().st_size * 0.55)])  # 4 of its 8 chips cannot be read
    with serve_folder(folder) as server:
        yield server


def url_layer(url: str, name: str):
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(f"/vsicurl/{url}", name, "gdal")
    assert layer.isValid(), layer.error().summary()
    return layer


def test_a_layer_url_with_credentials_is_read_with_them_and_logged_without(clay_provider, served, tmp_path):
    from clay_core.parquet import read_embeddings

    layer = url_layer(served.url("good.tif", token=True, userinfo=True), "good")
    assert any(secret in layer.source() for secret in SECRETS)  # what the worker is given
    feedback = RecordingFeedback()
    out = tmp_path / "out" / "good.gpq"
    result = run("clay:embed", base_parameters(out, INPUT=[layer], DATE="2020-01-01"), feedback)
    assert result["CHIPS"] == 4  # 128 x 128 px: 2 x 2 chips of 64 px
    log = feedback.textLog()
    assert "worker (pid" in log and "/vsicurl/http://127.0.0.1" in log  # the command is logged ...
    assert_no_secret(log, "the Processing log")  # ... without the secret
    assert_no_secret("\n".join(feedback.progress_texts), "the progress texts")
    for path in out.parent.rglob("*"):
        if path.is_file():
            assert not any(secret.encode() in path.read_bytes() for secret in SECRETS), path
    assert set(read_embeddings(out).table.column("source_url").to_pylist()) == {
        f"/vsicurl/http://127.0.0.1:{served.port}/good.tif?style=x"
    }


def test_chip_failures_and_the_error_of_a_layer_url_have_no_credentials(clay_provider, served, tmp_path):
    from qgis.core import QgsProcessingException

    layer = url_layer(served.url("half.tif", token=True, userinfo=True), "half")
    feedback = RecordingFeedback()
    out = tmp_path / "out" / "half.gpq"
    with pytest.raises(QgsProcessingException) as raised:
        run("clay:embed", base_parameters(out, INPUT=[layer], DATE="2020-01-01"), feedback)
    message = str(raised.value)
    assert "4 of 8 chips failed" in message and "127.0.0.1" in message, message
    assert_no_secret(message, "the error")
    log = feedback.textLog()
    assert "skipped chip" in log
    assert_no_secret(log, "the Processing log")
    sidecar = out.with_name(out.name + ".failures.json")
    assert sidecar.is_file()
    for path in out.parent.rglob("*"):
        if path.is_file():
            assert not any(secret.encode() in path.read_bytes() for secret in SECRETS), path


class ConsoleRecorder:
    """A clay_qgis.runtime.Feedback that keeps every line the installer step logs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pushInfo(self, text: str) -> None:  # noqa: N802 - QGIS API
        self.lines.append(text)

    def pushConsoleInfo(self, text: str) -> None:  # noqa: N802 - QGIS API
        self.lines.append(text)

    def setProgress(self, percent: float) -> None: ...  # noqa: N802 - QGIS API
    def setProgressText(self, text: str) -> None: ...  # noqa: N802 - QGIS API

    def isCanceled(self) -> bool:  # noqa: N802 - QGIS API
        return False


def test_a_private_index_password_in_pip_args_is_not_logged(served):
    """clay:setupruntime's PIP_ARGS may name a private index with its password: pip gets it, the log does not."""
    import sys

    from clay_qgis import runtime

    index = served.url("simple/", userinfo=True)
    feedback = ConsoleRecorder()
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", index, "clay-no-such-package"]
    with pytest.raises(runtime.RuntimeSetupError) as failure:
        runtime.stream(command, feedback, (0, 10), "installing packages")
    log = "\n".join(feedback.lines)
    assert_no_secret(log, "the installer log")
    assert_no_secret(str(failure.value), "the error")
    assert "--index-url http://127.0.0.1:" in log and "clay-no-such-package" in str(failure.value), log


def test_the_history_command_names_the_layer_without_credentials(clay_provider, served, tmp_path):
    """What Processing's history records (ProcessingLog.addToLog(algorithm.asPythonCommand(...)) in the dialog)."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProject

    layer = url_layer(served.url("good.tif", token=True, userinfo=True), "good")
    QgsProject.instance().addMapLayer(layer)
    try:
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        algorithm = QgsApplication.processingRegistry().createAlgorithmById("clay:embed")
        parameters = base_parameters(tmp_path / "o.gpq", INPUT=[layer.id()], DATE="2020-01-01")
        command = algorithm.asPythonCommand(parameters, context)
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    assert command.startswith('processing.run("clay:embed"') and f"127.0.0.1:{served.port}/good.tif" in command
    assert_no_secret(command, "the history command")
