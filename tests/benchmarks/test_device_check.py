"""The GPU device check (benchmarks/device_check.py): its dry run on the CPU, without the geo stack, so it
cannot rot before a GPU is lent; and its parts that decide what the JSON says."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "device_check.py"
# What the lent GPU machine lacks: the dry run must not need any of it.
BLOCKED = ("rasterio", "pyproj", "geopandas", "shapely", "pyogrio", "s3fs", "dask", "affine", "fiona")


@pytest.fixture(scope="module")
def device_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def geo_free_environment(folder: Path) -> dict[str, str]:
    """Environment in which every Python process (subprocesses too) is barred from the geo stack: a
    sys.meta_path blocker installed through a sitecustomize module on PYTHONPATH."""
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(f"""
        import sys

        class _GeoBlocker:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {BLOCKED!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not on the GPU machine)",
                                              name=name)
                return None

        sys.meta_path.insert(0, _GeoBlocker())
    """)
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """One dry run without the geo stack, through the wrapper the lead calls on the GPU machine.
    Returns (stdout JSON, $OUT JSON)."""
    scratch = tmp_path_factory.mktemp("device-check")
    out = scratch / "out"
    env = {**geo_free_environment(scratch), "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "device_check.sh"), "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), json.loads((out / "device_check.json").read_text())


def test_only_the_raster_readers_need_the_geo_stack(tmp_path: Path) -> None:
    """Every clay_core module imports without rasterio/pyproj/...; the file readers (and the chip grid's
    affine transforms) may not, and open_source imports them only when a source is opened."""
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "clay_core").rglob("*.py")
    )
    probe = (
        "import importlib, json, sys\nfailed = {}\nfor name in sys.argv[1:]:\n    try:\n"
        "        importlib.import_module(name)\n    except ImportError as error:\n"
        "        failed[name] = str(error)\nprint(json.dumps(failed))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *modules],
        cwd=REPO,
        env=geo_free_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    failed = json.loads(done.stdout)
    readers = {"clay_core.grid.chips"} | {m for m in modules if m.startswith("clay_core.sources.")}
    assert set(failed) <= readers, {m: failed[m] for m in set(failed) - readers}
    assert all("blocked" in reason for reason in failed.values()), failed
    assert "clay_core.sources" not in failed and "clay_core.sources.base" not in failed


def test_dry_run_runs_every_section_without_the_geo_stack(dry_run: tuple[dict, dict]) -> None:
    report, saved = dry_run
    assert saved == report  # $OUT/device_check.json is the same document as stdout
    assert report["dry_run"] is True
    assert {name: section["status"] for name, section in report["sections"].items()} == {
        "environment": "ok",
        "gpu_tests": "ok",
        "models": "ok",
        "pipeline": "ok",
        "speedups": "ok",
    }
    environment = report["sections"]["environment"]
    assert not any(environment["geo_modules_importable"].values())  # the blocker held ...
    assert environment["clay_core_imports_ok"], environment["clay_core_imports"]  # ... and clay_core imports


def test_dry_run_reports_the_gpu_tests_as_skipped_without_cuda(dry_run: tuple[dict, dict]) -> None:
    tests = dry_run[0]["sections"]["gpu_tests"]
    assert tests["files"] and tests["tests"]
    assert {t["outcome"] for t in tests["tests"]} == {"skipped"}
    assert all(t["reason"] == "needs CUDA" for t in tests["tests"])


def test_dry_run_compares_bf16_with_fp32_on_real_chips(dry_run: tuple[dict, dict]) -> None:
    models = dry_run[0]["sections"]["models"]["models"]
    assert set(models) == {"clay-v0-tiny", "clay-v1.5-tiny"}
    for entry in models.values():
        accuracy = entry["accuracy"]
        assert len(accuracy["cosine"]) == entry["real_chips"] >= 2
        assert 0.99 <= accuracy["min_cosine"] < 1.0  # bf16 really ran: close, not equal
        assert all(d > 0 for d in accuracy["max_abs_diff"])
        assert entry["attention_ops_fp32"]["aten_ops"]  # the SDPA kernel that ran is named
        assert [run["batch_size"] for run in entry["sweep"]] == [1, 2]
        assert all(run["chips_per_s"] > 0 and run["fraction_of_peak"] > 0 for run in entry["sweep"])
        assert entry["best"]["batch_size"] in (1, 2)


def test_dry_run_embeds_every_chip_through_the_loader(dry_run: tuple[dict, dict]) -> None:
    pipeline = dry_run[0]["sections"]["pipeline"]
    assert [run["workers"] for run in pipeline["runs"]] == [0, 2]
    for run in pipeline["runs"]:
        assert run["chips"] == pipeline["chips"] == 8  # a 128 px tile of 64 px chips, listed twice
        split = run["time_split_s"]
        assert sum(split.values()) == pytest.approx(run["seconds"], abs=0.01)
    assert pipeline["model_only"]["chips_per_s"] > 0


def test_dry_run_tries_compile_and_reports_agreement(dry_run: tuple[dict, dict]) -> None:
    speedups = dry_run[0]["sections"]["speedups"]["clay-v1.5-tiny"]
    assert speedups["cuda_graph"] == {"skipped": "needs CUDA"}
    compiled = speedups["compile"]
    assert compiled["backend"] == "eager" and compiled["speedup"] > 0 and compiled["chips_per_s"] > 0
    assert compiled["min_cosine_vs_eager"] >= 0.9999  # the eager backend runs the same kernels
    assert isinstance(compiled["helps"], bool)
    assert speedups["keep"] == (["compile"] if compiled["helps"] else [])  # the CUDA graph was skipped: never kept


@pytest.mark.parametrize(
    ("speedup", "agreement", "kept"),
    [
        (1.30, 0.99999, True),
        (1.05, 0.9999, True),  # both limits are inclusive
        (1.04, 1.0, False),  # within run-to-run noise
        (0.80, 1.0, False),  # slower
        (2.00, 0.999, False),  # faster, but the embeddings change
        (2.00, None, False),  # no agreement measured (non-finite outputs)
    ],
)
def test_a_speedup_is_kept_only_when_faster_and_unchanged(
    device_check: ModuleType, speedup: float, agreement: float | None, kept: bool
) -> None:
    assert device_check.helps(speedup, agreement) is kept


def test_keep_lists_the_speedups_that_helped_and_never_a_skipped_or_failed_one(device_check: ModuleType) -> None:
    entry = {
        "cuda_graph": {"speedup": 1.8, "min_cosine_vs_eager": 1.0, "helps": True},
        "compile": {"speedup": 1.01, "min_cosine_vs_eager": 1.0, "helps": False},
    }
    assert device_check.kept_speedups(entry) == ["cuda_graph"]
    entry["compile"] = {"speedup": 1.3, "min_cosine_vs_eager": 1.0, "helps": True}
    assert device_check.kept_speedups(entry) == ["cuda_graph", "compile"]
    assert device_check.kept_speedups({"cuda_graph": {"skipped": "needs CUDA"}, "compile": {"error": "boom"}}) == []
    assert device_check.kept_speedups({"compile": {"skipped": "time budget: 3 s left"}}) == []


def test_fixture_chips_are_real_and_cut_at_both_sizes(device_check: ModuleType) -> None:
    region = device_check.fixture_region()
    assert region.pixels.shape == (10, 512, 1024) and region.bands[0] == "B02"
    assert np.isnan(region.pixels).mean() < 1e-4 and np.nanmin(region.pixels) > 0
    large = device_check.fixture_chips(512, 2)
    small = device_check.fixture_chips(256, 8)
    assert large.pixels.shape == (2, 10, 512, 512) and small.pixels.shape == (8, 10, 256, 256)
    # the second 512 px chip is the 2 x 2 block of 256 px chips at columns 2-3
    np.testing.assert_array_equal(large.pixels[1, :, 256:, :256], small.pixels[6])
    assert np.all(np.abs(small.lonlat - [12.6, 52.5]) < 0.2)  # tile 33UUU, near Berlin


def test_junit_import_errors_of_the_geo_stack_count_as_skips(device_check: ModuleType, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.core.test_device" name="test_a" time="0.5"/>'
        '<testcase classname="tests.core.test_b" name="test_b" time="0.1">'
        '<failure message="AssertionError: 0.98 &lt; 0.999">trace</failure></testcase>'
        '<testcase classname="" name="tests.core.sources.test_raster" time="0">'
        '<error message="collection failure">'
        "ModuleNotFoundError: No module named 'rasterio'</error></testcase>"
        "</testsuite></testsuites>"
    )
    results = {r["test"]: r for r in device_check._junit_results(junit)}
    assert results["tests.core.test_device::test_a"]["outcome"] == "passed"
    assert results["tests.core.test_b::test_b"]["outcome"] == "failed"
    assert results["tests.core.test_b::test_b"]["reason"] == "AssertionError: 0.98 < 0.999"
    raster = results["tests.core.sources.test_raster"]
    assert raster["outcome"] == "skipped" and "geo stack" in raster["reason"]


def test_sections_skip_on_budget_and_keep_going_after_a_failure(device_check: ModuleType, tmp_path: Path) -> None:
    budget = device_check.Budget(10.0)
    report = device_check.Report(str(tmp_path), dry_run=True, budget=budget)

    def broken() -> dict:
        raise RuntimeError("CUDA error: an illegal memory access")

    device_check.run_section(report, "first", budget, 0.0, broken)
    device_check.run_section(report, "second", budget, 0.0, lambda: {"value": 1})
    device_check.run_section(report, "third", budget, 60.0, lambda: {"value": 2})
    sections = json.loads((tmp_path / "device_check.json").read_text())["sections"]
    assert sections["first"]["status"] == "error" and "illegal memory access" in sections["first"]["error"]
    assert sections["second"]["status"] == "ok" and sections["second"]["value"] == 1
    assert sections["third"]["status"] == "skipped" and "time budget" in sections["third"]["reason"]


def test_the_h200_plan_fits_the_budget(device_check: ModuleType) -> None:
    """The sweeps' kernel time at half of 790 TFLOP/s, from the FLOP counts: a small part of the budget."""
    planned = device_check.planned_compute_s(device_check.FULL)
    assert set(planned) == {"clay-v0-small", "clay-v1.5-large"}
    assert 0 < sum(planned.values()) < 0.15 * device_check.FULL.budget_s
