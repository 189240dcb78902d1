"""Progress reporting for people (a bar on stderr) and for the QGIS worker (JSON lines on stdout).

The JSON protocol, one object per line on stdout:
  {"event": "progress", "done": 3, "total": 10, "percent": 30.0, "message": "..."}
  {"event": "log", "level": "info"|"warning", "message": "..."}
  {"event": "result", "result": {...}}
  {"event": "error", "message": "...", "kind": "input"|"internal"}

Every reporter redacts what it prints (clay_core.provenance.redact): a message may quote a source URL or data
source string, and its credentials must reach neither a terminal, a log file nor the QGIS Processing log.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol, TextIO

from clay_core.provenance import redact


class Reporter(Protocol):
    def start(self, total: int | None, message: str = "") -> None: ...
    def advance(self, n: int = 1, message: str = "") -> None: ...
    def log(self, message: str, level: str = "info") -> None: ...
    def result(self, result: dict[str, Any]) -> None: ...
    def error(self, message: str, kind: str = "internal") -> None: ...
    def close(self) -> None: ...


class JsonLinesReporter:
    """Machine-readable progress for the plugin worker; flushes every line so QGIS sees it at once."""

    def __init__(self, stream: TextIO | None = None, min_interval_s: float = 0.2) -> None:
        self._stream = stream or sys.stdout
        self._total: int | None = None
        self._done = 0
        self._last_emit = 0.0
        self._min_interval_s = min_interval_s

    def _emit(self, payload: dict[str, Any]) -> None:
        # default: a value JSON has no type for (a Path, a date) is written as its text, redacted too
        self._stream.write(json.dumps(redacted(payload), default=lambda value: redact(str(value))) + "\n")
        self._stream.flush()

    def start(self, total: int | None, message: str = "") -> None:
        self._total, self._done = total, 0
        self._emit({"event": "progress", "done": 0, "total": total, "percent": 0.0, "message": message})

    def advance(self, n: int = 1, message: str = "") -> None:
        self._done += n
        now = time.monotonic()
        finished = self._total is not None and self._done >= self._total
        # Throttle: a fast loop must not flood the pipe, but the final step is always reported.
        if not finished and now - self._last_emit < self._min_interval_s:
            return
        self._last_emit = now
        percent = 100.0 * self._done / self._total if self._total else None
        self._emit(
            {"event": "progress", "done": self._done, "total": self._total, "percent": percent, "message": message}
        )

    def log(self, message: str, level: str = "info") -> None:
        self._emit({"event": "log", "level": level, "message": message})

    def result(self, result: dict[str, Any]) -> None:
        self._emit({"event": "result", "result": result})

    def error(self, message: str, kind: str = "internal") -> None:
        self._emit({"event": "error", "message": message, "kind": kind})

    def close(self) -> None:
        self._stream.flush()


class BarReporter:
    """A tqdm bar on stderr for people at a terminal; results go to stdout as readable text."""

    def __init__(self, disable: bool = False) -> None:
        self._bar: Any = None
        self._disable = disable

    def start(self, total: int | None, message: str = "") -> None:
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(
            total=total, desc=redact(message) or None, file=sys.stderr, disable=self._disable, dynamic_ncols=True
        )

    def advance(self, n: int = 1, message: str = "") -> None:
        if self._bar is not None:
            if message:
                self._bar.set_postfix_str(redact(message), refresh=False)
            self._bar.update(n)

    def log(self, message: str, level: str = "info") -> None:
        line = log_line(message, level)
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def result(self, result: dict[str, Any]) -> None:
        self.close()

    def error(self, message: str, kind: str = "internal") -> None:
        self.close()
        print(error_line(message), file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LogLinesReporter(BarReporter):
    """`--progress bar` when stderr is not a terminal (a log file, a pipe, a batch system): a bar redrawn with
    carriage returns turns into one unreadable line there, so progress is a plain line at every tenth done."""

    STEPS = 10

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(disable=True)
        self._stream = stream
        self._total: int | None = None
        self._done = 0
        self._message = ""
        self._started = 0.0

    def start(self, total: int | None, message: str = "") -> None:
        self._total, self._done, self._message, self._started = total, 0, message, time.monotonic()
        if self._message:
            self.log(self._message)

    def advance(self, n: int = 1, message: str = "") -> None:
        before, self._done = self._done, self._done + n
        if not self._total:
            return
        step = self._total / self.STEPS
        if int(self._done / step) > int(before / step) or self._done >= self._total > before:
            percent = min(100.0, 100.0 * self._done / self._total)
            seconds = time.monotonic() - self._started
            self.log(f"{self._message or 'progress'}: {self._done}/{self._total} ({percent:.0f} %, {seconds:.0f} s)")

    def log(self, message: str, level: str = "info") -> None:
        stream = self._stream or sys.stderr
        print(log_line(message, level), file=stream, flush=True)

    def error(self, message: str, kind: str = "internal") -> None:
        print(error_line(message), file=self._stream or sys.stderr, flush=True)


class NullReporter:
    """For library callers who want no output (the CLI's `--progress none` still prints errors:
    ErrorsOnlyReporter)."""

    def start(self, total: int | None, message: str = "") -> None: ...
    def advance(self, n: int = 1, message: str = "") -> None: ...
    def log(self, message: str, level: str = "info") -> None: ...
    def result(self, result: dict[str, Any]) -> None: ...
    def error(self, message: str, kind: str = "internal") -> None: ...
    def close(self) -> None: ...


class ErrorsOnlyReporter(NullReporter):
    """`--progress none`: no progress and no chatter, but the one error line still reaches stderr (without
    it a failed run would be silent: exit code 2 and nothing to say why)."""

    def error(self, message: str, kind: str = "internal") -> None:
        print(error_line(message), file=sys.stderr)


def log_line(message: str, level: str = "info") -> str:
    """A log message as the text reporters print it: redacted, a warning marked as one."""
    return ("warning: " if level == "warning" else "") + redact(message)


def error_line(message: str) -> str:
    """The one error line the text reporters print to stderr, redacted."""
    return f"clay: error: {redact(message)}"


def redacted(value: Any) -> Any:
    """`value` (an event, a result: dicts, lists, strings) with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    return value


def make_reporter(mode: str) -> Reporter:
    """`mode` is the CLI's --progress value: bar, json or none."""
    if mode == "json":
        return JsonLinesReporter()
    if mode == "none":
        return ErrorsOnlyReporter()
    return BarReporter() if sys.stderr.isatty() else LogLinesReporter()
