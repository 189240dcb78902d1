"""Atomic file output: write to a temporary file beside the destination, then rename.

A crash, kill -9 or full disk therefore never leaves a half-written output under the real name, and an
existing file is only replaced once the new one is complete. The temporary name starts with a dot and
ends with `.tmp` so that interrupted runs can find and remove their leftovers (`stale_temporaries`).

Without `overwrite`, the finished file is put in place with os.link, which fails when the name exists: of two
runs racing for one new output exactly one wins and the other is told, with nothing replaced (a check
followed by a rename could let both "succeed", the second silently replacing the first).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from clay_core.errors import ClayInputError


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
def atomic_output(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` (or, without `overwrite`, takes the
    name only if it is still free), on any failure it is removed.

        with atomic_output(out) as tmp:
            pq.write_table(table, tmp)
    """
    path = Path(path)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        if overwrite:
            os.replace(temporary, path)
        else:
            publish_new(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def publish_new(temporary: Path, path: Path) -> None:
    """Give the finished `temporary` the name `path` only if no file has it (atomically), then drop the
    temporary name. File systems without hard links fall back to an exclusive create + rename."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise ClayInputError(
            f"{path} already exists (written by another run meanwhile?); choose another output or pass --overwrite"
        ) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        _claim_then_replace(temporary, path)
        return
    temporary.unlink(missing_ok=True)


def _claim_then_replace(temporary: Path, path: Path) -> None:
    """No hard links (e.g. FAT, some network shares): claim the name with O_EXCL, then rename over the claim."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise ClayInputError(f"{path} already exists; choose another output or pass --overwrite") from None
    os.replace(temporary, path)
