"""Assemble the installable QGIS plugin.

    python scripts/package_plugin.py          -> build/plugin/clay_qgis/ and dist/clay_qgis-<version>.zip
    python scripts/package_plugin.py --dev    -> build/qgis-plugins/clay_qgis/ (symlinks into the checkout)

The plugin folder = clay_qgis/ + metadata.txt (top level, the single source of truth) + clay_core twice: its
sources (imported in-process by the plugin) and a wheel in wheels/ built from pyproject.toml, which
clay:setupruntime installs with its dependencies into the managed runtime, so the plugin and its worker
always run the same code. The dev folder relies on the venv/PYTHONPATH instead, so edits show up without
rebuilding. Icons load by file path (clay_qgis/icons), so resources.qrc is never compiled: pyrcc5 is Qt5-only
and its output imports PyQt5 directly.
"""

from __future__ import annotations

import argparse
import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = "clay_qgis"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "resources_rc.py")


def plugin_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(REPO / "metadata.txt", encoding="utf-8")
    return parser["general"]["version"]


def build_clay_core_wheel(target_dir: Path) -> Path:
    """A pure-Python wheel of clay_core (pyproject.toml: its metadata and dependency ranges), built offline with
    the setuptools of the Python running this script."""
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
        source = Path(scratch) / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy2(REPO / name, source / name)
        shutil.copytree(REPO / "clay_core", source / "clay_core", ignore=IGNORE)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--quiet",
                "--wheel-dir",
                str(Path(scratch) / "dist"),
                str(source),
            ],
            check=True,
        )
        wheels = list((Path(scratch) / "dist").glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one clay_core wheel, got {wheels}")
        wheel = target_dir / wheels[0].name
        shutil.copy2(wheels[0], wheel)
    return wheel


def build_dev_folder(root: Path) -> Path:
    folder = root / PLUGIN
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in (REPO / PLUGIN).iterdir() if entry.name != "__pycache__"}
    wanted["metadata.txt"] = REPO / "metadata.txt"
    for existing in folder.iterdir():
        if existing.is_symlink() and existing.name not in wanted:
            existing.unlink()  # a file removed from the source tree
    for name, source in wanted.items():
        link = folder / name
        if link.is_symlink() and Path(os.readlink(link)) == source:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    (folder / "resources_rc.py").unlink(missing_ok=True)  # compiled by older versions of this script
    return folder


def build_release(build_root: Path, dist: Path) -> Path:
    folder = build_root / PLUGIN
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(REPO / PLUGIN, folder, ignore=IGNORE)
    shutil.copy2(REPO / "metadata.txt", folder / "metadata.txt")
    shutil.copytree(REPO / "clay_core", folder / "clay_core", ignore=IGNORE)
    build_clay_core_wheel(folder / "wheels")
    dist.mkdir(parents=True, exist_ok=True)
    archive = dist / f"{PLUGIN}-{plugin_version()}.zip"
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, path.relative_to(build_root))
    os.replace(tmp, archive)
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true", help="symlinked development folder for QGIS_PLUGINPATH")
    args = parser.parse_args()
    if args.dev:
        print(build_dev_folder(REPO / "build" / "qgis-plugins"))
    else:
        print(build_release(REPO / "build" / "plugin", REPO / "dist"))


if __name__ == "__main__":
    main()
