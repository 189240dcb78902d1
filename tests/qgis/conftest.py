"""QGIS test fixtures: headless QGIS comes from pytest-qgis (settings in pyproject.toml); this adds
Processing and the clay provider once per session, as the plugin's initProcessing() does in QGIS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.qgis import QGIS_PLUGINS, REPO, write_embeddings_file


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
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "package_plugin.py"), "--dev"], check=True, capture_output=True
    )
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
    env.update(
        {
            "QGIS_CUSTOM_CONFIG_PATH": str(profile),
            "QGIS_PLUGINPATH": str(dev_plugin_folder),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(venv_site), QGIS_PLUGINS]),
            "QT_QPA_PLATFORM": "offscreen",
            "PROJ_DATA": "/usr/share/proj",
            "CLAY_PYTHON": env.get("CLAY_PYTHON", sys.executable),
        }
    )
    return env


# ----------------------------------------------------------------------------------------------
# Tiny embeddings files (random vectors on a 33UUU UTM grid) for the similarity/layer tests
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def embeddings_file(tmp_path: Path) -> Path:
    return write_embeddings_file(tmp_path / "chips.gpq")


@pytest.fixture(scope="session")
def make_embeddings():
    """The `write_embeddings_file` helper for tests that need several files or other shapes."""
    return write_embeddings_file
