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
    code = main(["--progress", "none", "bench", "--model", "clay-v0-tiny", "--chip-size", "64", "--chips", "1",
                 "--batch-sizes", "1", "--no-gpu", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "clay-v0-tiny" and report["cpu"]["runs"][0]["batch_size"] == 1


def test_clay_bench_rejects_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--progress", "none", "bench", "--model", "clay-v0-huge", "--no-gpu"])
    assert code == 2
