from __future__ import annotations

from pathlib import Path

import pytest

from clay_core.atomic import atomic_output, stale_temporaries


def test_success_replaces_the_destination_and_leaves_no_temporary(tmp_path: Path):
    out = tmp_path / "a.gpq"
    out.write_text("old")
    with atomic_output(out) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".a.gpq.")
        temporary.write_text("new")
        assert out.read_text() == "old"  # nothing visible until the rename
    assert out.read_text() == "new"
    assert stale_temporaries(out) == []


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path):
    out = tmp_path / "a.gpq"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(out) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk full")
    assert out.read_text() == "old"
    assert stale_temporaries(out) == []


def test_stale_temporaries_finds_leftovers_of_a_killed_writer(tmp_path: Path):
    out = tmp_path / "a.gpq"
    leftover = tmp_path / ".a.gpq.x1y2.tmp"
    leftover.write_text("killed")
    (tmp_path / ".b.gpq.x1y2.tmp").write_text("another output's")
    assert stale_temporaries(out) == [leftover]
