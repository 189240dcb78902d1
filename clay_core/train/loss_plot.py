"""The loss plot written beside each checkpoint (`RUN.loss.png`). A convenience: no plot never costs a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clay_core.atomic import atomic_output
from clay_core.progress import Reporter


def loss_plot_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".loss.png")


def write_loss_plot(losses: Sequence[float], path: Path, title: str) -> Path | None:
    """Loss per optimizer step (and a moving average) as a PNG, written atomically."""
    if not losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = np.arange(1, len(losses) + 1)
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    axes.plot(steps, losses, lw=0.8, alpha=0.5, label="loss per step")
    window = max(1, min(50, len(losses) // 10))
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes.plot(steps[window - 1 :], smooth, lw=1.8, label=f"moving mean ({window} steps)")
    axes.set(xlabel="optimizer step", ylabel="masked reconstruction MSE (v0 loss)", title=title)
    axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        with atomic_output(path) as temporary:
            figure.savefig(temporary, format="png")
    finally:
        plt.close(figure)
    return path


def loss_plotting_available(reporter: Reporter) -> bool:
    """Whether matplotlib imports; warns (once per run) when it does not."""
    try:
        import matplotlib  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        reporter.log(
            f"no loss plot: matplotlib cannot be imported ({type(exc).__name__}: {exc}); "
            "pip install matplotlib to get one",
            "warning",
        )
        return False
    return True


def try_loss_plot(losses: Sequence[float], path: Path, title: str, reporter: Reporter) -> bool:
    """write_loss_plot, but a failure only warns: it must never cost the checkpoint or the run."""
    try:
        return write_loss_plot(losses, path, title) is not None
    except Exception as exc:  # noqa: BLE001 - any plotting/backend/disk error is non-fatal here
        reporter.log(f"loss plot {path} not written ({type(exc).__name__}: {exc})", "warning")
        return False
