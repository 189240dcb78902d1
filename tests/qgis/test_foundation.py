"""The plugin as QGIS sees it: metadata, provider registration, clay:info in-process and through the
real qgis_process (the only test that catches GDAL/PROJ binary clashes and plugin-loading problems)."""

from __future__ import annotations

import configparser
import json
import zipfile
from pathlib import Path

import pytest
import torch

import clay_core
from tests.helpers.qgis import REPO, run_qgis_process


def read_metadata() -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read(REPO / "metadata.txt", encoding="utf-8")
    return parser["general"]


def test_metadata_is_complete_and_matches_package_version():
    meta = read_metadata()
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"] == "yes"
    assert meta["supportsQt6"] == "True"
    assert meta["version"] == clay_core.__version__
    for key in ("name", "description", "about", "author", "email", "repository", "icon"):
        assert meta[key].strip(), key
    assert (REPO / "clay_qgis" / meta["icon"]).is_file()


def test_provider_is_registered_and_lists_algorithms(clay_provider):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("clay")
    assert provider is clay_provider
    ids = {algorithm.id() for algorithm in provider.algorithms()}
    assert "clay:info" in ids
    for algorithm in provider.algorithms():
        assert algorithm.displayName() and algorithm.shortHelpString()


def test_info_runs_in_process(clay_provider):
    import processing

    result = processing.run("clay:info", {"DEVICE": 0})
    assert result["CLAY_CORE"] == clay_core.__version__
    assert result["TORCH"] == torch.__version__
    assert result["QGIS"].startswith("3.")
    assert result["GDAL"] and result["PROJ"]
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    assert result["DEVICE"].startswith(expected_device)
    if expected_device == "cpu":
        assert result["PRECISION"] == "fp32"
        assert int(result["THREADS"]) >= 1
    assert json.loads(result["REPORT"])["clay_core"] == clay_core.__version__


def test_plugin_gui_adds_and_removes_its_menu(qgis_iface, qgis_processing_ready):
    from qgis.core import QgsApplication

    import clay_qgis

    registry = QgsApplication.processingRegistry()
    if registry.providerById("clay") is not None:  # registered by other tests: the plugin must add its own
        registry.removeProvider("clay")
    plugin = clay_qgis.classFactory(qgis_iface)
    plugin.initGui()
    assert registry.providerById("clay") is plugin.provider
    assert plugin.actions and all(action.text() for action in plugin.actions)
    plugin.unload()
    assert registry.providerById("clay") is None  # the `clay_provider` fixture registers it again when needed
    assert not plugin.actions


def test_real_qgis_process_runs_clay_info(qgis_process_env):
    listed = run_qgis_process(qgis_process_env, "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "clay:info" in listed.stdout

    done = run_qgis_process(qgis_process_env, "--json", "run", "clay:info", "--", "DEVICE=0")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    report = json.loads(done.stdout)
    results = report["results"]
    assert results["CLAY_CORE"] == clay_core.__version__
    assert results["TORCH"] == torch.__version__
    assert results["QGIS"].startswith("3.")
    assert results["GDAL"] and results["PROJ"]
    assert results["PRECISION"] in ("fp32", "bf16")
    assert "free(): invalid pointer" not in done.stderr and "double free" not in done.stderr
    # The geo libraries must be the system's, the ones QGIS itself loads: a wheel's bundled GDAL/PROJ reports
    # its own version (and crashes inside QGIS processes sooner or later).
    assert results["GDAL"] == results["QGIS_GDAL"]
    assert results["PROJ"] == system_proj_version()


def system_proj_version() -> str:
    import re
    import subprocess

    banner = subprocess.run(["proj"], capture_output=True, text=True)  # prints "Rel. 9.1.1, ..." and usage
    return re.search(r"Rel\. ([0-9.]+)", banner.stdout + banner.stderr).group(1)


def test_release_zip_holds_an_installable_plugin(tmp_path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("package_plugin", REPO / "scripts" / "package_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    archive = module.build_release(tmp_path / "build", tmp_path / "dist")
    names = set(zipfile.ZipFile(archive).namelist())
    for required in (
        "clay_qgis/__init__.py",
        "clay_qgis/metadata.txt",
        "clay_qgis/provider.py",
        "clay_qgis/icons/clay.svg",
        "clay_qgis/clay_core/__init__.py",
        "clay_qgis/clay_core/cli/__init__.py",
    ):
        assert required in names, required
    assert not any("__pycache__" in name or "resources_rc" in name for name in names)


@pytest.mark.parametrize("bad", ["", "[general]\nname=x\n"])
def test_profile_enabling_is_idempotent(tmp_path: Path, bad: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("qgis_profile", REPO / "scripts" / "qgis_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ini = tmp_path / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(bad)
    module.enable_plugin(tmp_path)
    first = ini.read_text()
    module.enable_plugin(tmp_path)
    assert ini.read_text() == first
    assert first.count("clay_qgis=true") == 1 and "[PythonPlugins]" in first
    if bad:
        assert "name=x" in first
