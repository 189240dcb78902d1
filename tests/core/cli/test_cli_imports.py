"""`clay --version`/`--help` and every worker start parse arguments first: that must not import torch."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_parser_imports_no_torch_and_no_pyarrow():
    code = (
        "import sys, clay_core.cli as cli; cli.build_parser(); "
        "heavy = [m for m in ('torch', 'pyarrow', 'clay_core.train', 'clay_core.embed', 'clay_core.device') "
        "if m in sys.modules]; print(heavy); assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_device_options_are_shared_and_checked_alike(capsys):
    import pytest

    from clay_core.cli import build_parser

    parser = build_parser()
    for command in (
        ["embed", "x", "-o", "o.gpq"],
        ["embed-mgrs", "33UUU", "--source", "d", "--start", "2020-01-01", "--end", "2020-01-02", "-o", "d"],
        ["info"],
        ["embed-locations", "-o", "o.gpq"],
    ):
        assert parser.parse_args([*command, "--device", "CUDA:1"]).device == "cuda:1"
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*command, "--device", "gpu"])
        assert exit_info.value.code == 2 and "cuda:N" in capsys.readouterr().err
