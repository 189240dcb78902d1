"""Device plan and the per-batch memory estimate."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from clay_core.device import (
    available_memory_bytes,
    estimate_encoder_memory,
    largest_batch_within,
    plan_device,
)
from clay_core.errors import ClayInputError

SMALL = dict(
    parameters=95_271_168,
    tokens=1538,
    dim=768,
    inner_dim=768,
    mlp_hidden=3072,
    heads=12,
    input_values=13 * 512 * 512 + 5,
)


def test_cpu_plan_is_fp32() -> None:
    plan = plan_device("cpu", "auto")
    assert plan.precision == "fp32" and plan.device == "cpu" and plan.threads >= 1
    with pytest.raises(ClayInputError, match="bf16 on CPU"):
        plan_device("cpu", "bf16")


def test_estimate_scales_with_batch_and_precision() -> None:
    one = estimate_encoder_memory(batch_size=1, **SMALL)
    eight = estimate_encoder_memory(batch_size=8, **SMALL)
    assert one.weights_bytes == 4 * SMALL["parameters"]
    # the MLP hidden (2 x 3072 + 2 x 768 values per token) is the widest point of a small-model block
    assert one.activations_bytes == 1538 * (2 * 768 + 2 * 3072) * 4
    assert eight.activations_bytes == 8 * one.activations_bytes
    assert eight.inputs_bytes == 8 * one.inputs_bytes
    bf16 = estimate_encoder_memory(batch_size=8, precision="bf16", **SMALL)
    assert bf16.activations_bytes * 2 == eight.activations_bytes
    assert bf16.weights_bytes == 6 * SMALL["parameters"]  # fp32 master + bf16 autocast copies
    scores = estimate_encoder_memory(batch_size=1, attention_matrix=True, **SMALL)
    assert scores.activations_bytes > one.activations_bytes
    assert one.as_dict()["total_bytes"] == one.total_bytes
    assert one.total_bytes == one.weights_bytes + one.inputs_bytes + one.activations_bytes + (64 << 20)
    staged = estimate_encoder_memory(batch_size=1, staging_bytes=one.activations_bytes * 3, **SMALL)
    assert staged.total_bytes == one.total_bytes + 2 * one.activations_bytes  # the larger of the two phases


def test_estimate_rejects_nonsense() -> None:
    with pytest.raises(ClayInputError):
        estimate_encoder_memory(batch_size=0, **SMALL)
    with pytest.raises(ClayInputError, match="precision"):
        estimate_encoder_memory(batch_size=1, precision="int4", **SMALL)


def test_largest_batch_within_budget() -> None:
    def estimate(batch: int):  # type: ignore[no-untyped-def]
        return estimate_encoder_memory(batch_size=batch, **SMALL)

    budget = estimate(5).total_bytes + 1
    assert largest_batch_within(estimate, budget) == 5
    assert largest_batch_within(estimate, estimate(1).total_bytes - 1) == 0
    assert largest_batch_within(estimate, 1 << 60, limit=64) == 64


def test_available_memory_on_cpu() -> None:
    free = available_memory_bytes(plan_device("cpu"))
    if not Path("/proc/meminfo").exists():  # Windows/macOS: not known
        assert free is None
        return
    assert free is not None and 0 < free <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_estimate_is_close_to_measured_cuda_peak() -> None:
    from clay_core.models import load_model

    model = load_model("clay-v0-tiny", device="cuda", precision="fp32", image_size=256)
    batch = {"pixels": torch.randn(4, 13, 256, 256), "latlon": torch.zeros(4, 2), "timestep": torch.zeros(4, 3)}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    model.embed(batch)
    measured = torch.cuda.max_memory_allocated()
    estimated = model.memory_estimate(4).total_bytes
    assert 0.5 * measured <= estimated <= 2.0 * measured, (estimated, measured)
