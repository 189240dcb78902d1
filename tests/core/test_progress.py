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
