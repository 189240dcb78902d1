"""Encoder throughput against the machine's own measured matmul peak (the "fraction of the FLOP bound").

Used by `benchmarks/encoder.py` and `clay bench`. Every figure is measured in the same process:
the peak is the best of a few large square matmuls at the same thread count and precision.
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from clay_core.device import available_memory_bytes, largest_batch_within, plan_device
from clay_core.models import EmbeddingModel, load_model

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Throughput:
    """FLOP rate per wall-clock second and per CPU second of this process (all its threads).

    The CPU-time rate is what a loaded, shared machine still lets us compare: time slices lost to
    other processes do not count against it (spin-waiting threads still do)."""

    gflops: float
    gflops_per_cpu_second: float


def measure_matmul_peak(
    device: torch.device, precision: str = "fp32", size: int = 2048, min_seconds: float = 1.0
) -> Throughput:
    """Best sustained rate of `size`^3 matmuls (2*size^3 FLOPs each) over at least `min_seconds`."""
    dtype = _DTYPES[precision]
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    torch.matmul(a, b, out=out)  # warm up the BLAS and its thread pool
    _synchronise(device)
    best, best_cpu, spent, repeats = 0.0, 0.0, 0.0, 1
    while spent < min_seconds:
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            torch.matmul(a, b, out=out)
        _synchronise(device)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        spent += elapsed
        flops = 2 * size**3 * repeats / 1e9
        best = max(best, flops / elapsed)
        best_cpu = max(best_cpu, flops / max(cpu, 1e-9))
        repeats = max(1, min(repeats * 2, int(repeats * 0.25 / max(elapsed, 1e-6)) or 1))
    return Throughput(best, best_cpu)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def random_batch(model: EmbeddingModel, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random chips in raw units (band mean + std * noise) through the model's own `prepare`:
    the encoder's cost does not depend on pixel values, and this works for any pixel family."""
    import datetime

    generator = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    bands = model.input_bands
    means = torch.tensor(model.sensor.means(bands))[None, :, None, None]
    stds = torch.tensor(model.sensor.stds(bands))[None, :, None, None]
    raw = means + stds * torch.randn(batch_size, len(bands), size, size, generator=generator)
    lonlat = torch.rand(batch_size, 2, generator=generator, dtype=torch.float64) * torch.tensor(
        [360.0, 180.0]
    ) - torch.tensor([180.0, 90.0])
    dates = [datetime.date(2020, 1 + i % 12, 1 + i % 28) for i in range(batch_size)]
    return model.prepare(raw, bands, lonlat, dates)


def time_embedding(
    model: EmbeddingModel, batch_size: int, chips: int, flops_per_chip: int, peak: Throughput, warmup_batches: int = 1
) -> dict[str, Any]:
    """chips/s of `model.embed` (mean level) over >= `chips` chips after `warmup_batches`."""
    batch = random_batch(model, batch_size)
    device = model.plan.torch_device
    for _ in range(warmup_batches):
        model.embed(batch)
    batches = max(1, -(-chips // batch_size))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _synchronise(device)
    seconds_per_batch = []
    cpu_start = time.process_time()
    for _ in range(batches):
        start = time.perf_counter()
        model.embed(batch)
        _synchronise(device)
        seconds_per_batch.append(time.perf_counter() - start)
    cpu_seconds = time.process_time() - cpu_start
    seconds = sum(seconds_per_batch)
    done = batches * batch_size
    gflops = flops_per_chip * done / seconds / 1e9
    result = {
        "batch_size": batch_size,
        "chips": done,
        "seconds": round(seconds, 3),
        "chips_per_s": round(done / seconds, 4),
        "seconds_per_chip": round(seconds / done, 4),
        "best_batch_chips_per_s": round(batch_size / min(seconds_per_batch), 4),
        "achieved_gflops": round(gflops, 2),
        "fraction_of_flop_bound": round(gflops / peak.gflops, 3),
        "memory_estimate_bytes": _memory_estimate(model, batch_size),
    }
    if device.type == "cpu":
        per_cpu_second = flops_per_chip * done / max(cpu_seconds, 1e-9) / 1e9
        result["gflops_per_cpu_second"] = round(per_cpu_second, 2)
        result["fraction_of_flop_bound_cpu_time"] = round(per_cpu_second / peak.gflops_per_cpu_second, 3)
    else:
        result["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return result


def flops_per_chip(model: EmbeddingModel, bands: int | None = None) -> int:
    """Multiply-add FLOPs of one chip (of `bands` bands, default the model's input bands) through the encoder.

    Analytic for the Clay families (attention included); any other family is counted by torch's
    FlopCounterMode on one chip, with the attention formula added for the fused CPU SDPA kernel, which
    the counter otherwise counts as 0 (it undercounted Clay v1.5-large by 14 %)."""
    if model.family == "clay-v0":
        from clay_core.models.clay_v0 import encoder_flops

        return encoder_flops(model.config)
    if model.family == "clay-v1.5":
        from clay_core.models.clay_v15 import encoder_flops as v15_encoder_flops

        return v15_encoder_flops(model.config, len(model.input_bands) if bands is None else bands)
    return counted_flops(model, random_batch(model, 1))


def counted_flops(model: EmbeddingModel, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of `model.encode(batch)` by torch's FlopCounterMode, fused CPU attention included."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_flash_attention(query: torch.Size, key: torch.Size, value: torch.Size, *args: Any, **kwargs: Any) -> int:
        return sdpa_flop_count(query, key, value)

    fused = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash_attention}
    with FlopCounterMode(display=False, custom_mapping=fused) as counter, torch.inference_mode():
        model.encode({k: v.to(model.plan.torch_device) for k, v in batch.items()})
    return int(counter.get_total_flops())


def measure_kernel_bound(model: EmbeddingModel, batch_size: int, repeats: int = 3) -> dict[str, Any]:
    """Clay v0 only: the rate of the model's own matmul shapes (the four linears and SDPA at this batch),
    each timed alone, combined by FLOP share into the rate the encoder would reach if LayerNorm, GELU,
    bias and residual passes cost nothing. Separates kernel efficiency from everything else."""
    import torch.nn.functional as F

    config = model.config
    tokens = batch_size * config.num_tokens
    inner, hidden, dim = config.heads * config.dim_head, config.mlp_hidden, config.dim
    x, h = torch.randn(tokens, dim), torch.randn(tokens, hidden)
    o = torch.randn(tokens, inner)
    w_qkv, w_out, w_in, w_back = (
        torch.randn(3 * inner, dim),
        torch.randn(dim, inner),
        torch.randn(hidden, dim),
        torch.randn(dim, hidden),
    )
    b_dim, b_hidden = torch.randn(dim), torch.randn(hidden)
    shapes = {
        "qkv": (lambda: F.linear(x, w_qkv), 2 * tokens * dim * 3 * inner),
        "out": (lambda: F.linear(o, w_out, b_dim), 2 * tokens * inner * dim),
        "mlp_in": (lambda: F.linear(x, w_in, b_hidden), 2 * tokens * dim * hidden),
        "mlp_out": (lambda: F.linear(h, w_back, b_dim), 2 * tokens * hidden * dim),
    }
    q = torch.randn(batch_size, config.heads, config.num_tokens, config.dim_head)
    shapes["attention"] = (
        lambda: F.scaled_dot_product_attention(q, q, q),
        4 * batch_size * config.num_tokens**2 * inner,
    )
    rates: dict[str, float] = {}
    with torch.inference_mode():
        for name, (run, flops) in shapes.items():
            run()
            best = 0.0
            for _ in range(repeats):
                start = time.process_time()
                run()
                best = max(best, flops / max(time.process_time() - start, 1e-9) / 1e9)
            rates[name] = best
    total_flops = sum(flops for _, flops in shapes.values())
    cpu_seconds = sum(flops / 1e9 / rates[name] for name, (_, flops) in shapes.items())
    return {
        "gflops_per_cpu_second": {k: round(v, 1) for k, v in rates.items()},
        "combined_gflops_per_cpu_second": round(total_flops / 1e9 / cpu_seconds, 2),
    }


def _memory_estimate(model: EmbeddingModel, batch_size: int) -> int | None:
    try:
        return model.memory_estimate(batch_size).total_bytes
    except NotImplementedError:  # a family without an estimate
        return None


def _tuned_batch(model: EmbeddingModel, cap: int) -> int:
    free = available_memory_bytes(model.plan)
    if free is None or _memory_estimate(model, 1) is None:
        return min(cap, 4)
    return max(1, largest_batch_within(model.memory_estimate, int(free * 0.6), limit=cap))


def run_encoder_benchmark(
    model_name: str = "clay-v0-small",
    image_size: int = 512,
    chips: int = 3,
    batch_sizes: Sequence[int | str] = (1, "auto"),
    threads: int | None = None,
    gpu: bool = True,
    gpu_chips: int = 64,
    log: Callable[[str], None] = lambda message: None,
    kernel_bound: bool = True,
) -> dict[str, Any]:
    """The whole benchmark as one JSON-able dict: CPU section always, GPU section when CUDA exists."""
    plan = plan_device("cpu", "fp32", threads)
    torch.manual_seed(0)
    model = load_model(model_name, device="cpu", precision="fp32", threads=plan.threads, image_size=image_size)
    log(f"measuring fp32 matmul peak on {plan.name}")
    cpu_peak = measure_matmul_peak(torch.device("cpu"), "fp32")
    load_before = _load_average()
    flops = flops_per_chip(model)
    report: dict[str, Any] = {
        "benchmark": "encoder",
        "model": model_name,
        "image_size": image_size,
        "patch_size": getattr(model.config, "patch_size", None),
        "tokens_per_chip": getattr(model.config, "num_tokens", None),
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflop_per_chip": round(flops / 1e9, 2),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": {"device": plan.name, "threads": plan.threads, "runs": []},
    }
    for requested in batch_sizes:
        size = _tuned_batch(model, cap=4) if requested == "auto" else int(requested)
        log(f"cpu fp32 batch {size} ({'tuned' if requested == 'auto' else 'fixed'})")
        run = time_embedding(model, size, max(chips, size), flops, cpu_peak)
        run["tuned"] = requested == "auto"
        report["cpu"]["runs"].append(run)
    # The bound is the best peak seen before or after the runs: a conservative denominator.
    after = measure_matmul_peak(torch.device("cpu"), "fp32")
    peak = Throughput(
        max(cpu_peak.gflops, after.gflops), max(cpu_peak.gflops_per_cpu_second, after.gflops_per_cpu_second)
    )
    for run in report["cpu"]["runs"]:
        run["fraction_of_flop_bound"] = round(run["achieved_gflops"] / peak.gflops, 3)
        run["fraction_of_flop_bound_cpu_time"] = round(run["gflops_per_cpu_second"] / peak.gflops_per_cpu_second, 3)
    report["cpu"].update(
        matmul_fp32_peak_gflops=round(peak.gflops, 2),
        matmul_fp32_peak_gflops_before_after=[round(cpu_peak.gflops, 2), round(after.gflops, 2)],
        matmul_fp32_peak_gflops_per_cpu_second=round(peak.gflops_per_cpu_second, 2),
        load_average_before_after=[load_before, _load_average()],
        best_fraction_of_flop_bound=max(r["fraction_of_flop_bound"] for r in report["cpu"]["runs"]),
        best_fraction_of_flop_bound_cpu_time=max(r["fraction_of_flop_bound_cpu_time"] for r in report["cpu"]["runs"]),
    )
    if gpu and torch.cuda.is_available():
        report["gpu"] = _gpu_section(model_name, image_size, flops, gpu_chips, log)
    if model.family == "clay-v0" and kernel_bound:
        largest = max(run["batch_size"] for run in report["cpu"]["runs"])
        log(f"timing the encoder's own matmul shapes alone (batch {largest})")
        bound = measure_kernel_bound(model, largest)
        bound["fraction_of_peak"] = round(
            bound["combined_gflops_per_cpu_second"] / report["cpu"]["matmul_fp32_peak_gflops_per_cpu_second"], 3
        )
        report["cpu"][f"kernel_bound_batch_{largest}"] = bound
    report["peak_rss_bytes"] = peak_rss_bytes()
    return report


def _load_average() -> float | None:
    """1-minute load average: other processes on a shared machine lower wall-clock figures."""
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _gpu_section(
    model_name: str, image_size: int, flops: int, chips: int, log: Callable[[str], None]
) -> dict[str, Any]:
    device = torch.device("cuda")
    section: dict[str, Any] = {"device": torch.cuda.get_device_name(device), "runs": []}
    for precision in ("bf16", "fp32"):
        log(f"measuring {precision} matmul peak on {section['device']}")
        peak = measure_matmul_peak(device, precision, size=8192, min_seconds=2.0)
        section[f"matmul_{precision}_peak_gflops"] = round(peak.gflops, 1)
        model = load_model(model_name, device="cuda", precision=precision, image_size=image_size)
        size = _tuned_batch(model, cap=64)
        log(f"cuda {precision} batch {size}")
        run = time_embedding(model, size, max(chips, size), flops, peak, warmup_batches=2)
        run["precision"] = precision
        section["runs"].append(run)
        del model
        torch.cuda.empty_cache()
    return section
