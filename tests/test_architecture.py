"""The layering rules of DESIGN.md, checked on the code itself:

- `clay_core` never imports Qt or QGIS (it runs in the worker, the CLI and on clusters);
- the plugin (`clay_qgis`, which runs inside QGIS's own Python) never imports torch, pyproj or rasterio:
  not in its own modules, and not through any `clay_core` module it imports, at import time or from a
  function (what the plugin imports lazily still runs in QGIS);
- no test imports another test module; shared helpers live in tests/helpers.

The import graph is read statically (ast), so a rule breaks the test even where the machine happens to have
the package; one subprocess also imports every plugin module with those packages blocked.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QT_AND_QGIS = {"qgis", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip", "processing"}
NOT_IN_QGIS = {"torch", "pyproj", "rasterio"}


@dataclass(frozen=True)
class Import:
    module: str  # the absolute dotted name imported
    path: Path
    line: int
    lazy: bool  # inside a function (runs when called, not when the module is imported)

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line} imports {self.module}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports_of(path: Path) -> Iterator[Import]:
    """Every import statement of a module (absolute names), except those under `if TYPE_CHECKING:`."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, path, child.lineno, lazy)
            elif isinstance(child, ast.ImportFrom):
                yield from from_import(child, lazy)
            else:
                inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                yield from visit(child, inner)

    def from_import(node: ast.ImportFrom, lazy: bool) -> Iterator[Import]:
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, node.module] if node.module else anchor)
        else:
            base = node.module or ""
        for alias in node.names:  # `from a import b` may import the submodule a.b
            submodule = f"{base}.{alias.name}"
            yield Import(submodule if module_path(submodule) else base, path, node.lineno, lazy)

    yield from visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)


def top(name: str) -> str:
    return name.split(".")[0]


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_clay_core_never_imports_qt_or_qgis() -> None:
    found = [str(i) for path in python_files("clay_core") for i in imports_of(path) if top(i.module) in QT_AND_QGIS]
    assert found == [], "clay_core must stay free of Qt/QGIS:\n" + "\n".join(found)


def in_process_imports() -> list[tuple[Import, list[str]]]:
    """Every import that can run inside QGIS, with the chain of modules that leads to it: all imports of the
    clay_qgis modules (lazy ones too: the plugin calls those functions in QGIS), and the module-level imports
    of every clay_core module (and package) they reach. What a clay_core function imports lazily is left to
    the subprocess test below and to review: a static scan cannot tell which functions the plugin calls."""
    found: list[tuple[Import, list[str]]] = []
    queue: list[tuple[Path, list[str], bool]] = [(p, [module_name(p)], True) for p in python_files("clay_qgis")]
    seen: set[Path] = set()
    while queue:
        path, chain, own = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for item in imports_of(path):
            if item.lazy and not own:
                continue
            found.append((item, chain))
            if top(item.module) != "clay_core":
                continue
            for name in [*_parents(item.module), item.module]:  # importing a.b.c runs a and a.b first
                target = module_path(name)
                if target is not None:
                    queue.append((target, [*chain, name], False))
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:index]) for index in range(1, len(parts))]


def test_the_plugin_never_imports_torch_pyproj_or_rasterio() -> None:
    found = [
        f"{item} (via {' -> '.join(chain)})" for item, chain in in_process_imports() if top(item.module) in NOT_IN_QGIS
    ]
    assert found == [], "QGIS's own Python may lack these; the plugin must not import them:\n" + "\n".join(found)


def test_the_static_scan_sees_lazy_and_transitive_imports(tmp_path: Path) -> None:
    """The scanner itself: a lazy import in a function and a relative import are both found."""
    package = REPO / "clay_core"
    sample = package / "models" / "registry.py"
    assert any(i.module == "torch" and not i.lazy for i in imports_of(sample))
    lazy = [i for i in imports_of(package / "grid" / "utm.py") if top(i.module) == "pyproj"]
    assert lazy and all(i.lazy for i in lazy)  # utm.py imports pyproj only inside _transformer
    chains = {item.module for item, _ in in_process_imports()}
    assert "clay_core.similarity" in chains  # reached from clay_qgis (layers, algorithms)


# Imports every plugin module with torch, pyproj and rasterio blocked, as QGIS's Python without them would.
BLOCKED_IMPORT = r"""
import importlib, pkgutil, sys
BLOCKED = ('torch', 'pyproj', 'rasterio')
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'No module named {name!r} (blocked: not in QGIS)')
sys.meta_path.insert(0, Block())
sys.path.append('/usr/share/qgis/python/plugins')
import clay_qgis
names = ['clay_qgis'] + [m.name for m in pkgutil.walk_packages(clay_qgis.__path__, 'clay_qgis.')]
for name in names:
    importlib.import_module(name)
from clay_qgis.algorithms import all_algorithms
for algorithm in all_algorithms():
    algorithm.initAlgorithm()
print('IMPORTED', len(names), sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED))
"""


def test_every_plugin_module_imports_with_torch_pyproj_and_rasterio_blocked() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT], capture_output=True, text=True, timeout=300, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count = int(done.stdout.split()[1])
    assert count >= len(python_files("clay_qgis")) - 1 and done.stdout.rstrip().endswith("[]"), done.stdout


def test_no_test_imports_another_test_module() -> None:
    """Shared test code lives in tests/helpers; test modules and conftest files are not libraries."""
    found = []
    for path in python_files("tests"):
        for item in imports_of(path):
            if top(item.module) != "tests" or item.module.startswith("tests.helpers"):
                continue
            found.append(str(item))
    assert found == [], "move shared test code to tests/helpers:\n" + "\n".join(found)


# ---- the Processing algorithms (clay_qgis/algorithms) ----------------------------------------------------

ALGORITHMS = REPO / "clay_qgis" / "algorithms"


def algorithm_classes(path: Path) -> list[ast.ClassDef]:
    """The classes of a module that derive from a *Algorithm class (ClayAlgorithm or QGIS's)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            (base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")).endswith("Algorithm")
            for base in node.bases
        )
    ]


def algorithm_modules() -> set[str]:
    """Modules holding an algorithm (not base.py, whose ClayAlgorithm derives from QgsProcessingAlgorithm)."""
    return {
        module_name(path)
        for path in python_files("clay_qgis/algorithms")
        if path.name not in ("__init__.py", "base.py") and algorithm_classes(path)
    }


def test_no_algorithm_module_imports_another() -> None:
    """What two algorithms share lives in base.py or a helper module (utils, rasters, search), as in QGIS's
    processing plugin; only the package's __init__ (the list of algorithms) imports them all."""
    modules = algorithm_modules()
    assert {"clay_qgis.algorithms.embed", "clay_qgis.algorithms.similarity"} <= modules  # the scan finds them
    found = [
        str(item)
        for path in python_files("clay_qgis/algorithms")
        if path.name != "__init__.py"
        for item in imports_of(path)
        if item.module in modules and item.module != module_name(path)
    ]
    found += [
        str(item)
        for path in python_files("clay_qgis")
        if not path.is_relative_to(ALGORITHMS)
        for item in imports_of(path)
        if item.module in modules
    ]
    assert found == [], "move the shared code to clay_qgis/algorithms/base.py or utils.py:\n" + "\n".join(found)


def test_worker_algorithms_use_the_template() -> None:
    """An algorithm that runs `clay ...` declares its command; base.py alone runs the worker, so the error
    mapping, the cleanup on cancel and the loading of results are written once."""
    found = []
    for path in python_files("clay_qgis/algorithms"):
        if path.name == "base.py":
            continue
        for node in algorithm_classes(path):
            methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
            if "command" in methods and "processAlgorithm" in methods:
                found.append(f"{path.name}: {node.name} defines both command and processAlgorithm")
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(call, ast.Attribute) and call.attr in ("run_worker", "run_worker_writing", "run_clay"):
                found.append(f"{path.name}:{call.lineno} calls {call.attr} (implement command instead)")
    assert found == [], "\n".join(found)
    commands = {
        path.stem
        for path in python_files("clay_qgis/algorithms")
        if any(
            item.name == "command"
            for node in algorithm_classes(path)
            for item in node.body
            if isinstance(item, ast.FunctionDef)
        )
    }
    assert {"embed", "embed_mgrs", "embed_locations", "train", "info"} <= commands
