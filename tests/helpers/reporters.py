"""A Reporter (clay_core.progress's protocol) that keeps what it is told, for tests of what a run says."""

from __future__ import annotations

from typing import Any


class RecordingReporter:
    """Keeps the total, each advance and each log line as (level, message); results and errors are ignored."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.advances: list[int] = []
        self.logs: list[tuple[str, str]] = []

    def start(self, total: int | None, message: str = "") -> None:
        self.total = total

    def advance(self, n: int = 1, message: str = "") -> None:
        self.advances.append(n)

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))

    def messages(self, containing: str) -> list[tuple[str, str]]:
        """(level, message) of the log lines that contain `containing`."""
        return [(level, message) for level, message in self.logs if containing in message]

    def result(self, result: dict[str, Any]) -> None: ...
    def error(self, message: str, kind: str = "internal") -> None: ...
    def close(self) -> None: ...
