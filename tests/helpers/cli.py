"""The `clay` command as the plugin's worker runs it: `python -m clay_core` in a child process that imports this
checkout's package, and the JSON-lines events it prints with `--progress json` (the protocol in
clay_core/progress.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def clay_env(**extra: str) -> dict[str, str]:
    """os.environ with this checkout first on PYTHONPATH, so a child process imports the clay_core under test."""
    path = os.pathsep.join(part for part in (str(REPO), os.environ.get("PYTHONPATH", "")) if part)
    return {**os.environ, "PYTHONPATH": path, **extra}


def clay_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "clay_core", *args]


def run_clay(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """One `python -m clay_core ...` run to its end: its exit code, stdout and stderr (text)."""
    return subprocess.run(
        clay_command(*args),
        env=clay_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_clay(*args: str, **popen: Any) -> subprocess.Popen[str]:
    """`python -m clay_core ...` started and left running; stdout and stderr are text pipes unless `popen` says
    otherwise."""
    options: dict[str, Any] = {"env": clay_env(), "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(clay_command(*args), **{**options, **popen})


def json_events(stdout: str) -> list[dict[str, Any]]:
    """Every event a `--progress json` run printed; each line of its stdout must be one (nothing else goes there)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def events_of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The events of one kind: "progress", "log", "result" or "error"."""
    return [event for event in events if event["event"] == kind]


def result_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The payload of a run's one `result` event."""
    results = events_of(events, "result")
    assert len(results) == 1, f"expected one result event, got {len(results)}: {events[-5:]}"
    return results[0]["result"]
