"""The environment report behind `clay info` and `clay:info`: versions, device, precision."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import clay_core
from clay_core.device import plan_device


def model_cache_dir() -> Path:
    """Where downloaded or user-registered checkpoints are kept (CLAY_MODEL_CACHE overrides)."""
    env = os.environ.get("CLAY_MODEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clay-qgis" / "models"


def qgis_version() -> str | None:
    """QGIS's version without importing qgis (clay_core never imports QGIS): ask the package manager,
    then qgis_process. None when QGIS is not installed."""
    if shutil.which("dpkg-query"):
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "qgis"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().split("+")[0]
    for exe in ("qgis_process.bin", "qgis_process"):
        path = shutil.which(exe)
        if not path:
            continue
        try:
            done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in done.stdout.splitlines():
            if line.startswith("QGIS"):
                return line.split()[1]
    return None


def collect_info(device: str = "auto", precision: str = "auto") -> dict[str, Any]:
    """Everything a bug report needs, as a flat-ish JSON-able dict."""
    import numpy
    import pyproj
    import rasterio
    import torch

    plan = plan_device(device, precision)
    return {
        "clay_core": clay_core.__version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "qgis": qgis_version(),
        "gdal": rasterio.__gdal_version__,
        "proj": pyproj.proj_version_str,
        "rasterio": rasterio.__version__,
        "pyproj": pyproj.__version__,
        "device": plan.device,
        "device_name": plan.name,
        "cuda_capability": plan.capability,
        "cuda_available": torch.cuda.is_available(),
        "precision": plan.precision,
        "precision_reason": plan.reason,
        "threads": plan.threads,
        "model_cache": str(model_cache_dir()),
    }


def format_info(info: dict[str, Any]) -> str:
    width = max(len(key) for key in info)
    return "\n".join(f"{key:<{width}}  {'-' if value is None else value}" for key, value in info.items())
