"""Qt6 / QGIS 4 readiness of clay_qgis, as far as it can be checked on QGIS 3.22 + Qt5: no Qt5-only code, every
Qt name the plugin uses exists in PyQt6, and the version-guarded helpers (clay_qgis.compat) work here."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "clay_qgis"
SOURCES = sorted(PLUGIN.rglob("*.py"))

# Qt5-only spellings: each is gone (or never existed) in PyQt6 / Qt6.
QT5_ONLY = {
    r"\bexec_\(": "exec_() (use exec())",
    r"\bprint_\(": "print_()",
    r"\bQRegExp\b": "QRegExp (Qt6: QRegularExpression)",
    r"\bQDesktopWidget\b": "QDesktopWidget",
    r"\.desktop\(\)": "QApplication.desktop()",
    r"\bQt\.MidButton\b": "Qt.MidButton",
    r":/plugins/": "a compiled Qt resource path (pyrcc5 is Qt5-only: load icons by file path)",
    r"\bresources_rc\b": "the pyrcc5-compiled resources module",
    r"\bQgsProcessing\.Type[A-Z]": "an unscoped QgsProcessing source type (use QgsProcessing.SourceType.X)",
    r"\bQgsFeatureSink\.FastInsert\b": "unscoped QgsFeatureSink.FastInsert (use QgsFeatureSink.Flag.FastInsert)",
}


def qt_imports(tree: ast.AST) -> dict[str, tuple[str, str]]:
    """Local name -> (Qt module, name) for `from qgis.PyQt.QtX import A [as B]`."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qgis.PyQt.Qt"):
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module.split(".")[-1], alias.name)
    return names


def attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def qt_names_used() -> set[tuple[str, str]]:
    """(Qt module, dotted name) for every Qt class imported and every attribute chain read from one
    (e.g. ("QtCore", "Qt.KeyboardModifier.ShiftModifier"))."""
    used = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        imported = qt_imports(tree)
        used |= {(module, name) for module, name in imported.values()}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):  # inner prefixes (Qt.AlignmentFlag) are checked too: harmless
                chain = attribute_chain(node)
                if chain and chain[0] in imported:
                    module, name = imported[chain[0]]
                    used.add((module, ".".join([name, *chain[1:]])))
    return used


def test_no_direct_pyqt5_import_or_qt5_only_api():
    problems = []
    for path in SOURCES:
        text = path.read_text()
        tree = ast.parse(text, str(path))
        for node in ast.walk(tree):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            problems += [
                f"{path.name}:{node.lineno}: imports {m} (use qgis.PyQt)"
                for m in modules
                if m.split(".")[0] in ("PyQt5", "PyQt6", "sip")
            ]
        for pattern, what in QT5_ONLY.items():
            problems += [f"{path.name}: {what}" for _ in re.finditer(pattern, text)]
        if path.name != "compat.py" and re.search(r"\bQVariant\.[A-Z]", text):
            problems.append(f"{path.name}: QVariant.<Type> (gone in PyQt6; use the clay_qgis.compat field types)")
    assert not problems, "\n".join(problems)


RESOLVE_IN_PYQT6 = r"""
import importlib, json, sys
missing = []
for module, dotted in json.loads(sys.stdin.read()):
    # QGIS's Qt6 shim (qgis.PyQt.QtWidgets) re-exports QAction & co. from QtGui, where Qt6 moved them.
    candidates = [module] + (["QtGui"] if module == "QtWidgets" else [])
    for candidate in candidates:
        value = importlib.import_module("PyQt6." + candidate)
        try:
            for part in dotted.split("."):
                value = getattr(value, part)
            break
        except AttributeError:
            continue
    else:
        missing.append(module + "." + dotted)
print(json.dumps(missing))
"""


def test_every_qt_name_the_plugin_uses_exists_in_pyqt6():
    """Resolved in a separate process: PyQt6 must not load into this QGIS (Qt5) process."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import PyQt6.QtCore"], capture_output=True)
    if probe.returncode != 0:
        pytest.fail("PyQt6 is not installed: apt-get install python3-pyqt6 (scripts/setup.sh does)")
    used = sorted(qt_names_used())
    assert ("QtCore", "Qt.AlignmentFlag.AlignCenter") in used  # the scan sees attribute chains
    result = subprocess.run(
        ["/usr/bin/python3", "-c", RESOLVE_IN_PYQT6], input=json.dumps(used), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_resolver_catches_an_unscoped_qt_enum():
    """The PyQt6 check fails on what only Qt5 accepts (guards the test above against passing vacuously)."""
    result = subprocess.run(
        ["/usr/bin/python3", "-c", RESOLVE_IN_PYQT6],
        input=json.dumps([["QtCore", "Qt.AlignCenter"], ["QtCore", "Qt.AlignmentFlag.AlignLeft"]]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == ["QtCore.Qt.AlignCenter"]


def test_the_icon_loads_from_its_file(qgis_app):
    from clay_qgis.provider import ICON_PATH, plugin_icon

    assert ICON_PATH.is_file() and not plugin_icon().isNull()
    assert not plugin_icon().pixmap(16, 16).isNull()


def test_compat_field_types_null_rectangle_and_text_font(qgis_app):
    from qgis.core import (
        QgsField,
        QgsLayoutItemLabel,
        QgsPrintLayout,
        QgsProject,
        QgsRectangle,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtGui import QFont

    from clay_qgis import compat

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # on 3.40/3.44 these paths must not warn
        table = QgsVectorLayer("None", "types", "memory")
        names = ("STRING", "DATE", "INT", "DOUBLE")
        assert table.dataProvider().addAttributes([QgsField(name, getattr(compat, name)) for name in names])
        table.updateFields()
        types = {name: table.fields().field(name).typeName().lower() for name in names}
        extent = compat.null_rectangle()
        assert extent.isNull()
        extent.combineExtentWith(QgsRectangle(1, 2, 3, 4))
        assert extent.toRectF().getCoords() == (1, 2, 3, 4)
        label = QgsLayoutItemLabel(QgsPrintLayout(QgsProject.instance()))
        compat.set_text_font(label, QFont("DejaVu Sans", 16))
    assert types["STRING"] in ("string", "qstring") and types["DATE"] == "date"
    assert types["INT"] in ("integer", "int") and types["DOUBLE"] in ("real", "double")
    font = label.textFormat().font() if hasattr(label, "textFormat") else label.font()
    assert font.family() == "DejaVu Sans"


def test_loading_a_layer_raises_no_deprecation_warning(qgis_app, embeddings_file):
    from clay_qgis import layers, style, vector_cache

    vector_cache.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        layer = layers.load_layer(embeddings_file)
        style.style_similarity(layer, [0.1] * layer.featureCount(), top_k=3)
    assert layer.featureCount() == 12
