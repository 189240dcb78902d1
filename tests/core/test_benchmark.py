"""The encoder benchmark and `clay bench` (tiny model, 64 px, so it stays fast)."""

from __future__ import annotations

import json

import pytest

from clay_core.benchmark import measure_matmul_peak, run_encoder_benchmark
from clay_core.cli import main


def test_matmul_peak_is_positive() -> None:
    import torch

    peak = measure_matmul_peak(torch.device("cpu"), "fp32", size=256, min_seconds=0.05)
    assert peak.gflops > 0 and peak.gflops_per_cpu_second > 0


def test_benchmark_report_is_consistent() -> None:
    report = run_encoder_benchmark("clay-v0-tiny", image_size=64, chips=2, batch_sizes=(1, 2), gpu=False)
    assert report["tokens_per_chip"] == 6 * 4 + 2 and report["parameters"] > 0
    runs = report["cpu"]["runs"]
    assert [run["batch_size"] for run in runs] == [1, 2]
    for run in runs:
        assert run["chips"] >= 2 and run["chips_per_s"] > 0
        expected = report["gflop_per_chip"] * run["chips_per_s"] / report["cpu"]["matmul_fp32_peak_gflops"]
        assert run["fraction_of_flop_bound"] == pytest.approx(expected, rel=0.05, abs=2e-3)
        assert run["fraction_of_flop_bound_cpu_time"] > 0
    assert report["peak_rss_bytes"] > 0 and "gpu" not in report
    bound = report["cpu"]["kernel_bound_batch_2"]
    rates = bound["gflops_per_cpu_second"]
    assert set(rates) == {"qkv", "out", "mlp_in", "mlp_out", "attention"}
    assert min(rates.values()) <= bound["combined_gflops_per_cpu_second"] <= max(rates.values())


def test_clay_bench_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--progress",
            "none",
            "bench",
            "--model",
            "clay-v0-tiny",
            "--chip-size",
            "64",
            "--chips",
            "1",
            "--batch-sizes",
            "1",
            "--no-gpu",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "clay-v0-tiny" and report["cpu"]["runs"][0]["batch_size"] == 1


def test_clay_bench_rejects_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--progress", "none", "bench", "--model", "clay-v0-huge", "--no-gpu"])
    assert code == 2


def test_v0_small_flops_match_a_hand_count() -> None:
    from clay_core.models import get_preset
    from clay_core.models.clay_v0 import encoder_flops

    # 512 px, 32 px patches: 16 x 16 patches in 6 band groups + 2 metadata tokens; dim 768 = 12 heads x 64,
    # MLP 3072, depth 12; 13 bands in the patch convolutions; 2 FLOPs per multiply-add.
    tokens, dim, mlp = 6 * 256 + 2, 768, 3072
    block = 2 * tokens * dim * (3 * dim) + 2 * tokens * dim * dim + 4 * tokens * tokens * dim + 4 * tokens * dim * mlp
    hand = 2 * 13 * 32 * 32 * dim * 256 + 2 * 5 * dim + 12 * block
    assert encoder_flops(get_preset("clay-v0-small").config) == hand
    assert round(hand / 1e9, 1) == 353.7


def test_v15_large_flops_match_a_hand_count() -> None:
    from clay_core.models import get_preset
    from clay_core.models.clay_v15 import encoder_flops

    # 256 px, 8 px patches: 32 x 32 patches + CLS; dim 1024 = 16 heads x 64, MLP 4096, depth 24; 10 S2 bands.
    tokens, dim, mlp = 1024 + 1, 1024, 4096
    block = 2 * tokens * dim * (3 * dim) + 2 * tokens * dim * dim + 4 * tokens * tokens * dim + 4 * tokens * dim * mlp
    hand = 2 * 10 * 8 * 8 * dim * 1024 + 24 * block
    assert encoder_flops(get_preset("clay-v1.5-large").config, bands=10) == hand
    assert round(hand / 1e9, 1) == 723.7  # torch's counter alone said 620.75: fused CPU attention counts 0


def test_v15_count_matches_torch_per_chip_and_counts_attention() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from clay_core.benchmark import counted_flops, flops_per_chip, random_batch
    from clay_core.models import load_model

    model = load_model("clay-v1.5-tiny", device="cpu", precision="fp32", image_size=64)
    one, three = counted_flops(model, random_batch(model, 1)), counted_flops(model, random_batch(model, 3))
    # The difference cancels the per-batch wavelength weight generator, leaving the per-chip cost.
    assert (three - one) // 2 == flops_per_chip(model)
    with FlopCounterMode(display=False) as plain, torch.inference_mode():
        model.encode(random_batch(model, 1))
    assert plain.get_total_flops() < one  # the plain counter misses the fused attention kernel
