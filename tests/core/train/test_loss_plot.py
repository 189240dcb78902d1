"""The loss plot is a convenience: no matplotlib, or a failing one, never costs the checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from clay_core.progress import NullReporter
from clay_core.train import train
from tests.helpers.training import tiny_settings


class _LogRecorder(NullReporter):
    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))


def test_missing_matplotlib_only_skips_the_loss_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib is a convenience: without it (or with a broken one) training still writes its checkpoints."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    reporter = _LogRecorder()
    result = train(tiny_settings(tmp_path, steps=2), reporter)
    assert result.global_step == 2 and Path(result.checkpoint).is_file()
    assert result.loss_plot is None and not (tmp_path / "run.loss.png").exists()
    warnings = [message for level, message in reporter.logs if level == "warning"]
    assert len(warnings) == 1 and "matplotlib" in warnings[0]  # once per run, not once per checkpoint


def test_failing_loss_plot_warns_and_keeps_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def broken_savefig(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    reporter = _LogRecorder()
    result = train(tiny_settings(tmp_path, steps=2, checkpoint_every=1), reporter)
    assert result.global_step == 2 and result.loss_plot is None
    assert torch.load(result.checkpoint, weights_only=True)["global_step"] == 2
    assert any(level == "warning" and "disk full" in message for level, message in reporter.logs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no temporary left behind
