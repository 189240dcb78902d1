from __future__ import annotations

import io

from clay_core.progress import JsonLinesReporter
from tests.helpers.cli import events_of, json_events


def test_json_reporter_throttles_but_always_reports_the_last_step():
    stream = io.StringIO()
    reporter = JsonLinesReporter(stream, min_interval_s=3600)
    reporter.start(100, "embedding")
    for _ in range(100):
        reporter.advance()
    progress = events_of(json_events(stream.getvalue()), "progress")
    # start, the first advance (no previous emit), and the final one: not 100 lines
    assert len(progress) <= 3
    assert progress[-1]["done"] == 100 and progress[-1]["percent"] == 100.0


def test_json_reporter_log_result_error_lines():
    stream = io.StringIO()
    reporter = JsonLinesReporter(stream)
    reporter.log("careful", level="warning")
    reporter.result({"output": "x.gpq"})
    reporter.error("bad chip", kind="input")
    assert json_events(stream.getvalue()) == [
        {"event": "log", "level": "warning", "message": "careful"},
        {"event": "result", "result": {"output": "x.gpq"}},
        {"event": "error", "message": "bad chip", "kind": "input"},
    ]


def test_json_events_carry_no_credentials_in_any_value():
    """Messages and results may quote a source (a URL with user:password@ or a token); a Path is text too."""
    from pathlib import Path

    stream = io.StringIO()
    reporter = JsonLinesReporter(stream)
    reporter.log("reading https://bob:hunter2@h.example/a.tif?token=TOKEN9&x=1", "warning")
    reporter.result({"problems": [{"reason": "cannot read /vsicurl/https://h.example/a.tif?sig=SIG77"}]})
    reporter.result({"source": Path("/vsicurl/https:/h.example/a.tif?api_key=KEY123")})
    reporter.error("password='s3cr3t' rejected", kind="input")
    text = stream.getvalue()
    for secret in ("hunter2", "TOKEN9", "SIG77", "KEY123", "s3cr3t"):
        assert secret not in text, (secret, text)
    assert "h.example/a.tif" in text and "x=1" in text


def test_progress_into_a_log_file_is_plain_lines_at_each_tenth():
    import io

    from clay_core.progress import LogLinesReporter

    stream = io.StringIO()
    reporter = LogLinesReporter(stream)
    reporter.start(40, "embedding 40 chips")
    for _ in range(40):
        reporter.advance(1, "batch")
    reporter.log("wrote out.gpq")
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "embedding 40 chips" and lines[-1] == "wrote out.gpq"
    steps = [line.split(": ")[1].split(" ")[0] for line in lines[1:-1]]
    assert steps == [f"{done}/40" for done in range(4, 41, 4)]


def test_the_bar_is_for_terminals_and_plain_lines_for_everything_else(monkeypatch):
    import io

    from clay_core.progress import BarReporter, LogLinesReporter, make_reporter

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())  # a log file or a pipe, as in a batch job
    assert type(make_reporter("bar")) is LogLinesReporter
    monkeypatch.setattr("sys.stderr", Terminal())
    assert type(make_reporter("bar")) is BarReporter
