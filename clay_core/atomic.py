"""Atomic file output: write to a temporary file beside the destination, then rename.

A crash, kill -9 or full disk therefore never leaves a half-written output under the real name, and an
existing file is only replaced once the new one is complete. The temporary name starts with a dot and
ends with `.tmp` so that interrupted runs can find and remove their leftovers (`stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _default_file_mode() -> int:
    """rw for whoever the umask allows (mkstemp's 0600 would hide outputs from other users)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_sibling(path: Path) -> Path:
    """A unique temporary name in the destination folder, so the final os.replace is atomic."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(handle, _default_file_mode())
    os.close(handle)
    return Path(name)


def stale_temporaries(path: Path) -> list[Path]:
    """Temporaries that an interrupted write of `path` left behind."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any failure it is removed.

        with atomic_output(out) as tmp:
            pq.write_table(table, tmp)
    """
    path = Path(path)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
