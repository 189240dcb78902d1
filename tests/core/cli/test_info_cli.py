"""`clay info` and the CLI's contract: exit codes, one-line errors, JSON progress protocol."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

import clay_core
from clay_core.cli import main
from tests.helpers.cli import json_events, run_clay, start_clay


def test_info_json_reports_versions_device_and_precision(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clay_core"] == clay_core.__version__
    assert info["torch"] == torch.__version__
    assert info["gdal"].count(".") >= 1 and info["proj"].count(".") >= 1
    if not torch.cuda.is_available():
        assert info["device"] == "cpu"
        assert info["precision"] == "fp32"
        assert "bf16" in info["precision_reason"]
    assert info["threads"] >= 1


def test_info_text_is_aligned_key_value_lines():
    done = run_clay("info")
    assert done.returncode == 0, done.stderr
    keys = [line.split()[0] for line in done.stdout.splitlines()]
    assert {"clay_core", "torch", "gdal", "proj", "device", "precision", "threads"} <= set(keys)


def test_progress_json_emits_a_result_event():
    done = run_clay("--progress", "json", "info")
    assert done.returncode == 0, done.stderr
    events = json_events(done.stdout)
    assert events[-1]["event"] == "result"
    assert events[-1]["result"]["clay_core"] == clay_core.__version__


def test_bad_input_exits_2_with_one_line_reason():
    done = run_clay("info", "--precision", "bf16", "--device", "cpu")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bf16" in lines[0] and "fp32" in lines[0]


def test_bad_input_in_json_mode_is_an_error_event():
    done = run_clay("--progress", "json", "info", "--precision", "bf16", "--device", "cpu")
    assert done.returncode == 2
    event = json_events(done.stdout)[-1]
    assert event == {"event": "error", "message": event["message"], "kind": "input"}


def test_console_script_and_module_are_the_same_command():
    from pathlib import Path

    clay = Path(sys.executable).parent / "clay"
    assert clay.exists(), "the `clay` console script is installed by pyproject's [project.scripts]"
    done = subprocess.run([str(clay), "--version"], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"clay {clay_core.__version__}"


def test_a_reader_that_stops_early_is_no_error():
    """`clay info --json | head -1`: the closed pipe ends the command quietly with the shell's SIGPIPE code
    (141), not "clay: error: BrokenPipeError" and exit 1, nor Python's "Exception ignored" at exit."""
    process = start_clay("info", "--json")
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the command writes anything: its first write finds no reader
    error = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert error == ""
