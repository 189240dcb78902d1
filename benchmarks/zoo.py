"""Model-zoo benchmark: Clay v1.5 chips/s per preset (CPU, and CUDA when present) and SatCLIP points/s.

    . scripts/env.sh && .venv/bin/python benchmarks/zoo.py [--presets tiny,small,base,large] [--chip-size 256]
        [--bands 10] [--chips 2] [--gpu-chips 64] [--points 20000] [--threads N] [--no-gpu]

Prints one JSON object. Weights are random (presets): the compute is the same as the released
checkpoints of the same size. Times cover prepare (normalise, encodings) + embed (encoder forward,
CLS pooling), after one warm-up batch. The large preset at 256 px is ~0.7 TFLOP per chip: expect
tens of seconds per chip on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from clay_core.device import plan_device  # noqa: E402
from clay_core.models import build_preset  # noqa: E402
from clay_core.sensors import SENTINEL2_L2A  # noqa: E402


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _random_s2_chips(count: int, bands: tuple[str, ...], size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = SENTINEL2_L2A.means(bands)[None, :, None, None]
    stds = SENTINEL2_L2A.stds(bands)[None, :, None, None]
    return (rng.standard_normal((count, len(bands), size, size), dtype=np.float32) * stds + means).astype(np.float32)


def bench_clay_v15(
    preset: str, device: str, chips: int, batch_size: int, chip_size: int, n_bands: int
) -> dict[str, Any]:
    model = build_preset(preset, image_size=chip_size)
    model.eval().apply_plan(plan_device(device, "auto"))
    bands = SENTINEL2_L2A.band_names[:n_bands]
    pixels = _random_s2_chips(batch_size, bands, chip_size)
    lonlat = np.tile([[12.5, 52.3]], (batch_size, 1))
    dates = [datetime.date(2024, 6, 17)] * batch_size
    torch_device = model.plan.torch_device

    def one_batch() -> None:
        model.embed(model.prepare(pixels, bands, lonlat, dates, gsd_m=10.0), "cls")

    one_batch()  # warm-up (allocator, kernels)
    _synchronise(torch_device)
    batches = max(1, -(-chips // batch_size))
    started = time.perf_counter()
    for _ in range(batches):
        one_batch()
    _synchronise(torch_device)
    seconds = time.perf_counter() - started
    done = batches * batch_size
    result = {
        "preset": preset,
        "device": model.plan.device,
        "device_name": model.plan.name,
        "precision": model.plan.precision,
        "chip_size": chip_size,
        "bands": n_bands,
        "batch_size": batch_size,
        "chips": done,
        "seconds": round(seconds, 3),
        "chips_per_s": round(done / seconds, 3),
        "encoder_parameters": sum(p.numel() for p in model.parameters()),
    }
    if torch_device.type == "cuda":
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(torch_device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(torch_device)
    return result


def bench_satclip(preset: str, device: str, points: int, batch_size: int) -> dict[str, Any]:
    model = build_preset(preset)
    model.eval().apply_plan(plan_device(device, "fp32"))
    rng = np.random.default_rng(1)
    lonlat = np.stack([rng.uniform(-180, 180, points), np.degrees(np.arcsin(rng.uniform(-1, 1, points)))], axis=1)
    model.embed_float64(lonlat[:batch_size])  # warm-up
    _synchronise(model.plan.torch_device)
    started = time.perf_counter()
    for start in range(0, points, batch_size):
        model.embed_float64(lonlat[start : start + batch_size])
    _synchronise(model.plan.torch_device)
    seconds = time.perf_counter() - started
    return {
        "preset": preset,
        "device": model.plan.device,
        "dtype": "float64",
        "points": points,
        "batch_size": batch_size,
        "seconds": round(seconds, 3),
        "points_per_s": round(points / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,small,base,large", help="Clay v1.5 sizes (clay-v1.5-NAME)")
    parser.add_argument("--chip-size", type=int, default=256)
    parser.add_argument("--bands", type=int, default=10, help="first N Sentinel-2 L2A bands")
    parser.add_argument("--chips", type=int, default=2, help="timed chips per preset on CPU")
    parser.add_argument("--cpu-batch-size", type=int, default=1)
    parser.add_argument("--gpu-chips", type=int, default=64)
    parser.add_argument("--gpu-batch-size", type=int, default=16)
    parser.add_argument("--points", type=int, default=20000, help="SatCLIP points per model")
    parser.add_argument("--point-batch-size", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU Clay runs (e.g. on a GPU machine)")
    args = parser.parse_args(argv)

    threads = plan_device("cpu", "fp32", args.threads).threads
    devices = [] if args.no_cpu else ["cpu"]
    if torch.cuda.is_available() and not args.no_gpu:
        devices.append("cuda")
    report: dict[str, Any] = {
        "benchmark": "zoo",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": threads,
        "cuda": torch.cuda.is_available(),
        "clay_v15": [],
        "satclip": [],
    }
    for name in args.presets.split(","):
        preset = f"clay-v1.5-{name.strip()}"
        for device in devices:
            chips, batch = (
                (args.gpu_chips, args.gpu_batch_size) if device == "cuda" else (args.chips, args.cpu_batch_size)
            )
            _log(f"{preset} on {device}: {chips} chips of {args.chip_size} px ...")
            entry = bench_clay_v15(preset, device, chips, batch, args.chip_size, args.bands)
            _log(f"  {entry['chips_per_s']} chips/s")
            report["clay_v15"].append(entry)
    for preset in ("satclip-l10", "satclip-l40"):
        for device in ["cpu"] + (["cuda"] if "cuda" in devices else []):
            _log(f"{preset} on {device}: {args.points} points ...")
            entry = bench_satclip(preset, device, args.points, args.point_batch_size)
            _log(f"  {entry['points_per_s']} points/s")
            report["satclip"].append(entry)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
