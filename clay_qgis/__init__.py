"""QGIS plugin entry point. QGIS imports this package and calls `classFactory(iface)`."""

from __future__ import annotations

import sys
from pathlib import Path


def ensure_clay_core_importable() -> None:
    """The installable zip bundles clay_core inside the plugin folder; make it importable.
    In a development checkout clay_core is already on sys.path (the venv or PYTHONPATH)."""
    try:
        import clay_core  # noqa: F401
    except ImportError:
        plugin_dir = str(Path(__file__).resolve().parent)
        if plugin_dir not in sys.path:
            sys.path.append(plugin_dir)


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    ensure_clay_core_importable()
    from clay_qgis.plugin import ClayPlugin

    return ClayPlugin(iface)
