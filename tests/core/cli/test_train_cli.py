"""`clay train` end to end on a tiny chip folder: one process, and 2 DDP processes on gloo via torchrun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clay_core.cli import main
from clay_core.models import load_model
from tests.helpers.chips import write_chip_folder
from tests.helpers.cli import clay_env, events_of, json_events, result_of

TINY = [
    "--preset",
    "clay-v0-tiny",
    "--image-size",
    "32",
    "--patch-size",
    "8",
    "--dim",
    "32",
    "--depth",
    "1",
    "--heads",
    "2",
    "--dim-head",
    "16",
    "--mlp-ratio",
    "2",
    "--decoder-dim",
    "16",
    "--decoder-depth",
    "1",
    "--decoder-heads",
    "2",
    "--decoder-dim-head",
    "8",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def test_clay_train_single_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chips = write_chip_folder(tmp_path / "chips")
    checkpoint = tmp_path / "out" / "tiny.ckpt"
    args = [
        "--progress",
        "json",
        "train",
        str(chips),
        "-o",
        str(checkpoint),
        *TINY,
        "--steps",
        "30",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "10",
        "--export-weights",
        str(tmp_path / "out" / "tiny-weights.ckpt"),
    ]
    assert main(args) == 0
    events = json_events(capsys.readouterr().out)
    result = result_of(events)
    assert any("chips/s" in (e.get("message") or "") for e in events_of(events, "progress"))
    assert result["global_step"] == 30
    assert result["final_loss"] < result["first_loss"]
    assert checkpoint.with_name("tiny.loss.png").exists()
    slim = torch.load(result["exported"], weights_only=True)
    assert "clay_train" not in slim and slim["global_step"] == 30
    model = load_model(result["exported"], device="cpu")
    assert model.config.dim == 32 and model.config.image_size == 32
    # nothing half-written is left next to the checkpoint
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["tiny-weights.ckpt", "tiny.ckpt", "tiny.loss.png"]


def test_clay_train_bad_input_exits_2(tmp_path: Path) -> None:
    chips = write_chip_folder(tmp_path / "chips", count=1, size=16)
    assert (
        main(["--progress", "none", "train", str(chips), "-o", str(tmp_path / "x.ckpt"), *TINY, "--steps", "1"]) == 2
    )  # chips (16 px) smaller than the model's 32 px input
    assert not (tmp_path / "x.ckpt").exists()


def test_band_groups_option_selects_v0_groups(tmp_path: Path) -> None:
    from clay_core.models.clay_v0_bands import select_band_groups

    assert select_band_groups("swir, rgb") == (("rgb", (2, 1, 0)), ("swir", (8, 9)))  # v0 order kept
    chips = write_chip_folder(tmp_path / "chips", count=1, size=32)
    assert (
        main(
            [
                "--progress",
                "none",
                "train",
                str(chips),
                "-o",
                str(tmp_path / "x.ckpt"),
                *TINY,
                "--steps",
                "1",
                "--band-groups",
                "rgb,lidar",
            ]
        )
        == 2
    )  # unknown group: a clear error
    assert not (tmp_path / "x.ckpt").exists()


@pytest.mark.slow
def test_clay_train_ddp_two_processes_on_gloo(tmp_path: Path) -> None:
    chips = write_chip_folder(tmp_path / "chips", count=5)
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "clay_core",
        "--progress",
        "json",
        "train",
        str(chips),
        "-o",
        str(out / "ddp.ckpt"),
        *TINY,
        "--steps",
        "6",
        "--batch-size",
        "2",
        "--accumulate",
        "2",
        "--checkpoint-every",
        "3",
    ]
    env = clay_env(OMP_NUM_THREADS="1")
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = result_of(json_events(completed.stdout))  # one: only rank 0 reports
    assert result["world_size"] == 2 and result["global_step"] == 6
    digests = result["rank_digests"]
    assert sorted(d["rank"] for d in digests) == ["0", "1"]
    assert digests[0]["weights"] == digests[1]["weights"]  # DDP kept the replicas identical
    assert digests[0]["losses"] == digests[1]["losses"]  # every rank logged the same (all-reduced) loss
    assert sorted(p.name for p in out.iterdir()) == ["ddp.ckpt", "ddp.loss.png"]  # only rank 0 wrote
    raw = torch.load(out / "ddp.ckpt", weights_only=True)
    assert raw["clay_train"]["data"]["world_size"] == 2
    assert raw["clay_train"]["data"]["samples_per_rank"] == 6 * 2 * 2


def test_building_the_train_parser_does_not_import_torch() -> None:
    """`clay --help` / `clay --version` build every parser: train's must not cost a torch import."""
    code = (
        "import argparse, sys; import clay_core.cli.train as command; "
        "command.register(argparse.ArgumentParser().add_subparsers()); "
        "print([name for name in ('torch', 'clay_core.train', 'clay_core.models.registry') if name in sys.modules])"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=clay_env(),
        check=True,
    )
    assert completed.stdout.strip() == "[]"
