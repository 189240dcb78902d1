"""clay_qgis.readers: an embeddings file read in QGIS's Python by each of the three ways (pyarrow, GDAL/OGR, the
Clay runtime's layer cache), and QGIS without pyarrow loading and scoring a file end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clay_core import layer_cache
from clay_core.parquet import read_embeddings, wkb_polygon_rings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def readers(qgis_app):
    from clay_qgis import readers, vector_cache

    vector_cache.clear_cache()
    return readers


def expected_rows(path: Path) -> layer_cache.LayerRows:
    return layer_cache.from_embedding_table(read_embeddings(path))


def test_pyarrow_is_taken_when_it_imports(readers, embeddings_file):
    rows, how = readers.read_layer_rows(embeddings_file)
    assert how == readers.PYARROW
    expected = expected_rows(embeddings_file)
    np.testing.assert_array_equal(rows.vectors, expected.vectors)
    assert rows.columns == expected.columns and rows.shape_per_row == (16,)


def write_geojson(source: Path, target: Path) -> Path:
    """The same rows as GeoJSON (OGR maps number arrays to RealList, as its Parquet driver does list columns)."""
    data = read_embeddings(source)
    table = data.table
    features = []
    for row in range(len(data)):
        ring = wkb_polygon_rings(data.geometry_wkb[row]).tolist()
        properties = {
            name: table.column(name)[row].as_py()
            for name in ("chip_id", "source_url", "row", "col", "nodata_fraction", "epsg", "utm_bbox")
        }
        properties["date"] = table.column("date")[row].as_py().isoformat()
        properties["embeddings"] = [float(v) for v in data.vectors[row]]
        features.append(
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": properties}
        )
    target.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return target


def test_the_ogr_reader_gives_the_same_rows(readers, embeddings_file, tmp_path):
    """The GDAL path's reading code on a driver Debian's GDAL has; the Parquet-specific part (metadata from the
    footer) is clay_core.parquet_meta, tested against pyarrow in tests/core."""
    rows = readers.read_with_gdal(write_geojson(embeddings_file, tmp_path / "e.geojson"))
    expected = expected_rows(embeddings_file)
    np.testing.assert_array_equal(rows.vectors, expected.vectors)
    assert rows.columns == expected.columns
    np.testing.assert_array_equal(rows.utm_bbox, expected.utm_bbox)
    for got, want in zip(rows.wkb, expected.wkb, strict=True):
        np.testing.assert_allclose(wkb_polygon_rings(got), wkb_polygon_rings(want), atol=1e-12)
    assert rows.metadata == {} and "WGS" in rows.crs  # not Parquet: no footer metadata, the CRS GDAL reports


@pytest.mark.skipif(
    "__import__('osgeo.ogr').ogr.GetDriverByName('Parquet') is None",
    reason="this GDAL has no Parquet driver (Debian's); Windows/macOS QGIS builds have it",
)
def test_gdal_parquet_driver_reads_our_file(readers, make_embeddings, tmp_path, monkeypatch):
    path = make_embeddings(tmp_path / "patches.gpq", shape=(2, 2, 4))
    monkeypatch.setattr(readers, "pyarrow_available", lambda: False)
    rows, how = readers.read_layer_rows(path)
    assert how == readers.GDAL
    expected = expected_rows(path)
    np.testing.assert_array_equal(rows.vectors, expected.vectors)
    assert rows.shape_per_row == (2, 2, 4) and rows.metadata == expected.metadata


def test_without_pyarrow_and_gdal_parquet_the_runtime_converts_once(readers, make_embeddings, tmp_path, monkeypatch):
    path = make_embeddings(tmp_path / "patches.gpq", shape=(2, 2, 4))
    monkeypatch.setattr(readers, "pyarrow_available", lambda: False)
    monkeypatch.setattr(readers, "gdal_parquet_driver", lambda: None)
    monkeypatch.setenv(readers.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("CLAY_PYTHON", sys.executable)  # the worker: this venv's python (the runtime has pyarrow)
    rows, how = readers.read_layer_rows(path)
    assert how == readers.RUNTIME
    folder = tmp_path / "cache" / layer_cache.cache_name(path)
    manifest_time = (folder / layer_cache.MANIFEST).stat().st_mtime_ns
    expected = expected_rows(path)
    np.testing.assert_array_equal(np.asarray(rows.vectors), expected.vectors)
    assert rows.columns == expected.columns and rows.shape_per_row == (2, 2, 4)
    readers.read_layer_rows(path)  # current cache: no second conversion
    assert (folder / layer_cache.MANIFEST).stat().st_mtime_ns == manifest_time
    # the patch view of the cached rows matches the pyarrow one
    from clay_qgis import vector_cache

    cached = vector_cache.load_embedding_set(path, "patches")
    monkeypatch.undo()
    vector_cache.clear_cache()
    direct = vector_cache.load_embedding_set(path, "patches")
    assert cached.reader == readers.RUNTIME and direct.reader == readers.PYARROW
    assert cached.wkb == direct.wkb and cached.columns == direct.columns
    np.testing.assert_array_equal(cached.index.vectors, direct.index.vectors)


def test_with_nothing_to_read_parquet_the_error_is_one_line_naming_the_set_up(
    readers, embeddings_file, tmp_path, monkeypatch
):
    monkeypatch.setattr(readers, "pyarrow_available", lambda: False)
    monkeypatch.setattr(readers, "gdal_parquet_driver", lambda: None)
    monkeypatch.setenv(readers.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("CLAY_PYTHON", str(tmp_path / "no-runtime" / "bin" / "python"))
    from clay_core.errors import ClayInputError

    with pytest.raises(ClayInputError) as error:
        readers.read_layer_rows(embeddings_file)
    message = str(error.value)
    assert "\n" not in message and "CLAY_PYTHON" in message and "clay:setupruntime" in message


# QGIS's Python as users have it: pyarrow cannot be imported. Loads the provider, then runs loadembeddings and
# similarity; prints one JSON line. argv: embeddings file, cache folder.
NO_PYARROW_QGIS = r"""
import json, sys
class NoPyarrow:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('pyarrow', 'torch'):
            raise ImportError(f'No module named {name!r} (blocked: QGIS without pyarrow)')
sys.meta_path.insert(0, NoPyarrow())
sys.path.append('/usr/share/qgis/python/plugins')
from qgis.core import QgsApplication, QgsProcessingException
app = QgsApplication([], False)
app.initQgis()
from processing.core.Processing import Processing
Processing.initialize()
import processing
from clay_qgis.provider import ClayProvider
provider = ClayProvider()
QgsApplication.processingRegistry().addProvider(provider)
out = {'algorithms': len(provider.algorithms()), 'pyarrow_after_load': 'pyarrow' in sys.modules}
try:
    loaded = processing.run('clay:loadembeddings', {'INPUT': sys.argv[1], 'MODE': 0, 'OUTPUT': 'memory:'})
    out['loaded'] = loaded['OUTPUT'].featureCount()
    scored = processing.run('clay:similarity', {'INPUT': sys.argv[1], 'CHIP_IDS': sys.argv[2], 'TOP_K': 3,
                                                'OUTPUT': 'memory:'})
    layer = scored['OUTPUT']
    out['matches'] = [[f['chip_id'], f['rank']] for f in layer.getFeatures()]
except QgsProcessingException as exc:
    out['error'] = str(exc)
out['pyarrow_imported'] = any(m.split('.')[0] == 'pyarrow' for m in sys.modules)
out['torch_imported'] = any(m.split('.')[0] == 'torch' for m in sys.modules)
print('RESULT ' + json.dumps(out))
"""


def run_qgis_without_pyarrow(
    embeddings_file: Path, chip_id: str, env_update: dict[str, str], plugin_root: Path = REPO
) -> dict:
    env = {**os.environ, "PYTHONPATH": str(plugin_root), "QT_QPA_PLATFORM": "offscreen", **env_update}
    env.pop("CLAY_PYTHON", None)
    env.update(env_update)
    # cwd: `python -c` puts it first on sys.path, and the plugin must come from plugin_root
    result = subprocess.run(
        [sys.executable, "-c", NO_PYARROW_QGIS, str(embeddings_file), chip_id],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=plugin_root,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_qgis_without_pyarrow_loads_and_scores_through_the_runtime(embeddings_file, tmp_path):
    """The dev venv's python stands in for the managed runtime (it has pyarrow); QGIS's side never imports it."""
    from osgeo import ogr

    if ogr.GetDriverByName("Parquet") is not None:
        pytest.skip("this GDAL reads Parquet itself; the runtime path is not taken")
    chip_id = read_embeddings(embeddings_file).chip_ids[5]
    out = run_qgis_without_pyarrow(
        embeddings_file, chip_id, {"CLAY_PYTHON": sys.executable, "CLAY_LAYER_CACHE": str(tmp_path / "cache")}
    )
    assert "error" not in out, out.get("error")
    assert out["algorithms"] >= 7 and not out["pyarrow_after_load"]
    assert out["loaded"] == 12
    assert out["matches"][0] == [chip_id, 1] and len(out["matches"]) == 3
    assert not out["pyarrow_imported"] and not out["torch_imported"]
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_qgis_without_pyarrow_or_runtime_says_what_to_do(embeddings_file, tmp_path):
    """As a user's QGIS before set-up: the plugin installed outside any checkout (no .venv next to it), a fresh
    profile (no runtime setting), no CLAY_PYTHON."""
    import shutil

    plugin_root = tmp_path / "plugins"
    for package in ("clay_qgis", "clay_core"):
        shutil.copytree(REPO / package, plugin_root / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = run_qgis_without_pyarrow(
        embeddings_file,
        "x",
        {"CLAY_LAYER_CACHE": str(tmp_path / "cache"), "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile")},
        plugin_root,
    )
    assert "\n" not in out["error"] and "Traceback" not in out["error"]
    assert "no Clay runtime is set up" in out["error"] and "clay:setupruntime" in out["error"]
    assert not (tmp_path / "cache").exists()


def test_a_runtime_that_is_gone_is_named_in_one_line(embeddings_file, tmp_path):
    out = run_qgis_without_pyarrow(
        embeddings_file,
        "x",
        {"CLAY_PYTHON": str(tmp_path / "missing" / "python"), "CLAY_LAYER_CACHE": str(tmp_path / "cache")},
    )
    assert "\n" not in out["error"] and "CLAY_PYTHON" in out["error"] and "clay:setupruntime" in out["error"]
