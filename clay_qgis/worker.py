"""Runs clay_core jobs in a separate Python process.

Why a subprocess: QGIS's own Python often cannot hold torch (ABI clashes, no pip), a CUDA crash must not
take QGIS down, cancel must really stop the work, and GPU memory must be freed at the end. The worker
speaks line-delimited JSON on stdout (see clay_core/progress.py); its stderr is kept for error messages.

What reaches the Processing log is redacted (clay_core.provenance.redact): the command line holds the sources
as the worker must read them, with any password or token in a layer's URL, and the worker's messages (from
GDAL's own stderr lines, or from a runtime with an older clay_core) may quote them too.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from clay_core.provenance import redact

SETTINGS_KEY = "clay/python"
CANCEL_GRACE_S = 0.5


class WorkerError(RuntimeError):
    """The worker failed; the message is the worker's own last error line, readable by a person."""


def _settings_python() -> str | None:
    try:
        from qgis.core import QgsSettings
    except ImportError:
        return None
    value = QgsSettings().value(SETTINGS_KEY, "", type=str)
    return value or None


def _clay_core_parent() -> Path | None:
    try:
        import clay_core
    except ImportError:
        return None
    return Path(clay_core.__file__).resolve().parent.parent


SETUP_HINT = 'run "Set up Clay runtime..." (Plugins > Clay embeddings) or the Processing algorithm clay:setupruntime'


class RuntimeMissingError(WorkerError):
    """No runtime is configured: the GUI offers to set one up (see gui/setup_prompt.py)."""


# Called with the one-line message when an algorithm finds no runtime; the plugin registers its GUI prompt here
# (qgis_process registers nothing: there the message is all). Listeners must be safe to call from any thread.
runtime_missing_listeners: list = []


def notify_runtime_missing(message: str) -> None:
    for listener in list(runtime_missing_listeners):
        with contextlib.suppress(Exception):  # a prompt must never turn the one-line error into a traceback
            listener(message)


def _checkout_venv_python() -> Path | None:
    """Developer convenience only: running from a checkout (pyproject.toml next to clay_qgis/), its .venv."""
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "pyproject.toml").is_file():
        return None
    for relative in ("bin/python", "Scripts/python.exe"):
        if (checkout / ".venv" / relative).is_file():
            return checkout / ".venv" / relative
    return None


def python_candidates() -> list[tuple[str, str]]:
    """(source, path) in priority order: CLAY_PYTHON, the QGIS setting (what clay:setupruntime stores), then
    a development checkout's .venv. The plugin installed from its zip never needs the last one."""
    candidates = []
    if os.environ.get("CLAY_PYTHON"):
        candidates.append(("CLAY_PYTHON", os.environ["CLAY_PYTHON"]))
    configured = _settings_python()
    if configured:
        candidates.append((f"setting {SETTINGS_KEY}", configured))
    checkout_venv = _checkout_venv_python()
    if checkout_venv is not None:
        candidates.append(("checkout venv", str(checkout_venv)))
    return candidates


def worker_python() -> str:
    for source, path in python_candidates():
        if Path(path).is_file() and os.access(path, os.X_OK):
            return path
        if source == "CLAY_PYTHON":
            raise WorkerError(
                f"the worker Python set by CLAY_PYTHON does not exist: {path}; unset CLAY_PYTHON "
                f"or point it at a Python with torch, or {SETUP_HINT}"
            )
        if source.startswith("setting"):
            raise RuntimeMissingError(f"the Clay runtime {path} is gone: {SETUP_HINT} to make it again")
    raise RuntimeMissingError(f"no Clay runtime (Python with PyTorch) is set up yet: {SETUP_HINT}, then try again")


def worker_environment(python: str | None = None) -> dict[str, str]:
    from clay_qgis.runtime import clean_environment, is_managed

    if python is not None and is_managed(python):
        # The managed runtime has the plugin's own clay_core installed; QGIS's PYTHONPATH and the data paths of
        # QGIS's own GDAL/PROJ must not leak in.
        return clean_environment()
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    parent = _clay_core_parent()
    if parent is not None:
        # The worker must import the same clay_core as the plugin (bundled in the zip, or the checkout).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(parent), env.get("PYTHONPATH")]))
    return env


def _pump(stream, sink: queue.Queue, tag: str) -> None:
    for line in iter(stream.readline, ""):
        sink.put((tag, line.rstrip("\n")))
    sink.put((tag, None))


_MISSING_MODULE = re.compile(r"No module named '?([A-Za-z0-9_.]+)'?")


def _friendly_error(last_error: str | None, stderr_tail: list[str], returncode: int) -> str:
    text = last_error or next((line for line in reversed(stderr_tail) if line.strip()), "")
    missing = _MISSING_MODULE.search(text)
    if missing:
        module = missing.group(1).split(".")[0]
        python = worker_python()
        what = "torch is not installed in" if module == "torch" else f"the module '{module}' is missing from"
        if os.environ.get("CLAY_PYTHON") == python:
            return (
                f"{what} the worker Python {python} (set by CLAY_PYTHON): install clay_core's dependencies "
                f"there, or unset CLAY_PYTHON and {SETUP_HINT}"
            )
        return f"{what} the worker Python {python}: {SETUP_HINT} (it installs torch and clay_core's dependencies)"
    if not text:
        text = f"the Clay worker exited with code {returncode} without an error message"
    return redact(text)


def run_clay(arguments: list[str], feedback=None, timeout_s: float | None = None) -> dict[str, Any]:
    """Run `python -m clay_core --progress json ARGS`, relay progress/logs to a QgsProcessingFeedback,
    terminate on cancel, and return the worker's result dict."""
    python = worker_python()
    command = [python, "-m", "clay_core", "--progress", "json", *arguments]
    # Own session (process group): cancel must also stop the DataLoader worker processes it forks.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=worker_environment(python),
        bufsize=1,
        start_new_session=os.name == "posix",
    )
    if feedback is not None:
        feedback.pushDebugInfo(redact(f"worker (pid {process.pid}): " + " ".join(command)))
    lines: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(target=_pump, args=(process.stdout, lines, "out"), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, lines, "err"), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        result, last_error, stderr_tail = _follow(process, lines, feedback, timeout_s)
    finally:
        # The pumps end at EOF (the worker is gone by now, also after a cancel); then release the pipes.
        for thread in threads:
            thread.join(timeout=1.0)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    returncode = process.wait()
    if returncode != 0 or result is None:
        raise WorkerError(_friendly_error(last_error, stderr_tail, returncode))
    return result


def _follow(
    process: subprocess.Popen, lines: queue.Queue, feedback, timeout_s: float | None
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """Relay the worker's events until both of its streams end; cancel/timeout terminate it.
    Returns (result, last error message, last stderr lines)."""
    stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
    result: dict[str, Any] | None = None
    last_error: str | None = None
    open_streams, started = 2, time.monotonic()
    while open_streams:
        if feedback is not None and feedback.isCanceled():
            _terminate(process)
            raise WorkerError("cancelled")
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            _terminate(process)
            raise WorkerError(f"the Clay worker did not finish within {timeout_s:.0f} s")
        try:
            tag, line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
        elif tag == "err":
            stderr_tail.append(line)
        else:
            event = _parse_event(line)
            if event is None:
                stderr_tail.append(line)
                continue
            result = event.get("result", result) if event.get("event") == "result" else result
            if event.get("event") == "error":
                last_error = event.get("message")
            _relay(event, feedback)
    return result, last_error, list(stderr_tail)


def _terminate(process: subprocess.Popen) -> None:
    """Cancel means stop now: SIGTERM to the worker's process group, SIGKILL if it has not gone within the
    grace period (a cancel must finish within a second)."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=CANCEL_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process, getattr(signal, "SIGKILL", signal.SIGTERM))
        process.wait()
    else:
        # The main process is gone; make sure no DataLoader child outlives it.
        _signal_group(process, getattr(signal, "SIGKILL", signal.SIGTERM))


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
    elif signum == signal.SIGTERM:
        process.terminate()
    else:
        process.kill()


def _parse_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _relay(event: dict[str, Any], feedback) -> None:
    if feedback is None:
        return
    kind = event["event"]
    if kind == "progress":
        if event.get("percent") is not None:
            feedback.setProgress(float(event["percent"]))
        if event.get("message"):
            feedback.setProgressText(redact(str(event["message"])))
    elif kind == "log":
        message = redact(str(event.get("message", "")))
        if event.get("level") == "warning":
            # A warning, not an error: reportError would print "ERROR:" under qgis_process for a skipped chip.
            feedback.pushWarning(message)
        else:
            feedback.pushInfo(message)


if __name__ == "__main__":  # manual check: python -m clay_qgis.worker info
    print(json.dumps(run_clay(sys.argv[1:]), indent=2))
