"""Resumable output for the embedding pipeline: part files, a job fingerprint, the final merge.

A job writing `OUT.gpq` works in `OUT.gpq.parts/`:
  job.json            what the parts belong to (model, level, layout, fingerprint of the chip list)
  lock                held with flock while a process writes (a second run on the same output is refused;
                      the kernel releases it when a process dies, even by SIGKILL; reader processes close
                      their inherited copy, so a killed run's orphans never keep it) and naming its owner
  part-00000.parquet  a few batches of rows, each written to a temp file and renamed: a part either exists
                      whole or not at all. Its schema metadata `clay_part` lists the chips it settles
                      (written, skipped for nodata) and the chips that failed (retried on the next run).
A re-run checks every part first (a truncated, empty or unreadable part, or a damaged job.json, is removed
and its chips are redone; the run says which in one line), then skips the chips the parts already settle;
at the end the parts are streamed into one GeoParquet
file (temp + rename) and the folder is removed. Every write goes through clay_core.atomic; opening the
store removes the temporaries a killed run left, inside the folder and beside the output (a kill during
the final merge leaves `.OUT.gpq.*.tmp` there).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clay_core.atomic import atomic_output, stale_temporaries
from clay_core.errors import ClayInputError
from clay_core.parquet import (
    bbox_of_table,
    chips_schema,
    chips_table,
    file_metadata,
    rows_per_group,
    union_bbox,
)

PART_KEY = b"clay_part"
JOB_FILE = "job.json"
# File descriptors of the locks this process holds: forked reader processes close their copies
# (release_inherited_locks), so that only this process keeps an output locked.
_HELD_LOCKS: set[int] = set()


def release_inherited_locks() -> None:
    """In a forked child: close the inherited lock descriptors. The parent's lock stays (it has its own
    descriptor), but it no longer outlives the parent when the child is orphaned."""
    for fd in list(_HELD_LOCKS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


def parts_dir_for(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def fingerprint(records: Iterable[Any]) -> str:
    """Hash of the chip list (ids and exact footprints): parts of another chip size/stride/bbox never mix."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.chip_id}|{record.epsg}|{tuple(record.utm_bounds)}|{record.date}\n".encode())
    return digest.hexdigest()


@dataclass
class PriorWork:
    """What earlier (interrupted) runs left in the parts folder."""

    written: set[str] = field(default_factory=set)
    skipped: dict[str, float] = field(default_factory=dict)  # chip_id -> nodata fraction
    next_index: int = 0
    damaged: list[str] = field(default_factory=list)  # "part-00003.parquet (truncated)": removed, to redo

    def describe_damage(self, folder: Path) -> str | None:
        if not self.damaged:
            return None
        return (
            f"redoing the chips of {len(self.damaged)} damaged file(s) in {folder}: "
            + ", ".join(self.damaged[:5])
            + (" ..." if len(self.damaged) > 5 else "")
        )

    @property
    def settled(self) -> set[str]:
        return self.written | set(self.skipped)


class PartStore:
    """The parts folder of one output: claim it, resume from it, add parts, merge them."""

    def __init__(self, output: Path, job: Mapping[str, Any]) -> None:
        self.output = output
        self.folder = parts_dir_for(output)
        self.job = dict(job)
        self._lock_handle: Any = None

    # ---- claiming and resuming -----------------------------------------------------------------
    def open(self, discard_other_job: bool) -> PriorWork:
        """Create or reuse the folder; refuse parts of a different job unless told to discard them."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ClayInputError(
                f"{self.folder} is a file, not the parts folder of {self.output}: move it away"
            ) from None
        self._lock()
        damaged = []
        previous = self._previous_job()
        if previous is None and (self.folder / JOB_FILE).exists():
            damaged.append(f"{JOB_FILE} (unreadable: its parts cannot be trusted)")
            self._clear_parts()
        elif previous is not None and previous != self.job:
            if not discard_other_job:
                changed = sorted(k for k in set(previous) | set(self.job) if previous.get(k) != self.job.get(k))
                raise ClayInputError(
                    f"{self.folder} holds parts of a different job (changed: {', '.join(changed)}); "
                    "re-run with the same options to resume, or pass --overwrite to start again"
                )
            self._clear_parts()
        self._write_job()
        self._remove_stale_temporaries()
        prior = self._prior_work()
        prior.damaged[:0] = damaged
        return prior

    def _previous_job(self) -> dict[str, Any] | None:
        """The job.json of an earlier run; None when there is none or it is damaged (empty, cut, not JSON)."""
        try:
            previous = json.loads((self.folder / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return previous if isinstance(previous, dict) else None

    def _lock(self) -> None:
        handle = open(self.folder / "lock", "a+")  # noqa: SIM115 - held open for the job's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip()
            handle.close()
            raise ClayInputError(
                f"another process{' (' + owner + ')' if owner else ''} is writing {self.output} "
                f"(lock in {self.folder}): wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._lock_handle = handle
        _HELD_LOCKS.add(handle.fileno())

    def close(self) -> None:
        if self._lock_handle is not None:
            _HELD_LOCKS.discard(self._lock_handle.fileno())
            self._lock_handle.close()
            self._lock_handle = None

    def holds_embeddings(self) -> bool:
        """Whether any part holds embedded chips (work worth keeping for a resume)."""
        for part in self.part_files():
            try:
                if read_part_info(part).get("written"):
                    return True
            except (OSError, ValueError, pa.ArrowException):
                continue
        return False

    def discard(self) -> None:
        """Remove the folder (nothing in it is worth resuming)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _write_job(self) -> None:
        with atomic_output(self.folder / JOB_FILE) as temporary:
            temporary.write_text(json.dumps(self.job, indent=1, sort_keys=True))

    def _clear_parts(self) -> None:
        for part in self.part_files():
            part.unlink()

    def _remove_stale_temporaries(self) -> None:
        """Writes killed half-way: parts and job.json in the folder, and the merge beside the output.
        Only called with the lock held, so no live writer of this output owns them."""
        leftovers = [*self.folder.glob(".*.tmp"), *stale_temporaries(self.output)]
        for path in leftovers:
            path.unlink(missing_ok=True)

    def part_files(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def _prior_work(self) -> PriorWork:
        prior = PriorWork()
        for part in self.part_files():
            problem = part_problem(part)
            if problem:
                prior.damaged.append(f"{part.name} ({problem})")
                part.unlink(missing_ok=True)
                continue
            info = read_part_info(part)
            prior.written.update(info.get("written", []))
            prior.skipped.update({chip: float(fraction) for chip, fraction in info.get("skipped", [])})
            prior.next_index = max(prior.next_index, int(part.stem.split("-")[1]) + 1)
        return prior

    # ---- writing parts -------------------------------------------------------------------------
    def write_part(self, index: int, table: pa.Table, info: Mapping[str, Any]) -> Path:
        path = self.folder / f"part-{index:05d}.parquet"
        meta = {PART_KEY: json.dumps(info).encode()}
        with atomic_output(path) as temporary:
            # Parts are short-lived: fast zstd level; the final merge re-encodes at the default level.
            pq.write_table(
                table.replace_schema_metadata(meta),
                temporary,
                compression="zstd",
                compression_level=1,
                row_group_size=rows_per_group(table.schema),
            )
        return path

    # ---- finishing -----------------------------------------------------------------------------
    def merge(
        self,
        schema: pa.Schema,
        clay_meta: Mapping[str, Any],
        explode_patches: bool,
        embedding_shape: Sequence[int] | None,
        overwrite: bool,
    ) -> tuple[int, int]:
        """Stream the parts into the output (temp + rename); returns (rows, chips). Removes the folder."""
        parts = self.part_files()
        bbox = union_bbox(read_part_info(p).get("bbox") for p in parts)
        meta = file_metadata(schema, clay_meta, bbox, explode_patches=explode_patches, embedding_shape=embedding_shape)
        if self.output.exists() and not overwrite:
            raise ClayInputError(f"{self.output} already exists; choose another output or pass --overwrite")
        seen: set[str] = set()
        rows = 0
        with (
            atomic_output(self.output, overwrite=overwrite) as temporary,
            pq.ParquetWriter(temporary, schema.with_metadata(meta), compression="zstd") as writer,
        ):
            for part in parts:
                table = _without_chips(self._read_part(part).replace_schema_metadata(None), seen)
                seen.update(table.column("chip_id").to_pylist())
                if table.num_rows:
                    writer.write_table(table.cast(schema), row_group_size=rows_per_group(schema))
                    rows += table.num_rows
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        return rows, len(seen)

    def _read_part(self, part: Path) -> pa.Table:
        """A part's rows; one damaged inside (it passed the footer check) is removed so the next run redoes it."""
        try:
            return pq.read_table(part)
        except (OSError, pa.ArrowException) as error:
            part.unlink(missing_ok=True)
            raise ClayInputError(
                f"{part} was damaged ({type(error).__name__}) and is removed: run the same "
                "command again to redo its chips"
            ) from None


def part_problem(part: Path) -> str | None:
    """Why a part file cannot be used (empty, truncated, not a part), or None when its footer, its chip list
    and its row count agree."""
    try:
        size = part.stat().st_size
        if size == 0:
            return "empty"
        metadata = pq.ParquetFile(part).metadata
        info = json.loads((metadata.metadata or {}).get(PART_KEY, b"null"))
    except (OSError, ValueError, pa.ArrowException):
        return "truncated or unreadable"
    if not isinstance(info, dict):
        return "not a part file"
    written = len(info.get("written", []))
    if (metadata.num_rows == 0) != (written == 0) or metadata.num_rows < written:
        return f"{metadata.num_rows} rows for {written} chips"
    return None


def _without_chips(table: pa.Table, chip_ids: set[str]) -> pa.Table:
    """Rows of chips not merged yet: a chip is never written twice, whatever the parts hold."""
    if not chip_ids or table.num_rows == 0:
        return table
    mask = pc.invert(pc.is_in(table.column("chip_id"), value_set=pa.array(sorted(chip_ids), pa.string())))
    return table.filter(mask)


def read_part_info(part: Path) -> dict[str, Any]:
    metadata = pq.read_schema(part).metadata or {}
    return json.loads(metadata.get(PART_KEY, b"{}"))


@dataclass
class _Pending:
    records: list[Any] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    nodata: list[float] = field(default_factory=list)
    filled: list[list[str]] = field(default_factory=list)
    satclip: list[np.ndarray] = field(default_factory=list)  # per batch, when the job adds the column
    skipped: list[tuple[str, float]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def chips(self) -> int:
        return len(self.records) + len(self.skipped) + len(self.failed)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.embeddings)


class PartWriter:
    """Buffers batches and writes them as parts on a background thread (compression overlaps compute).

    At most one part is being written while the next fills; `write_s` is the time spent writing."""

    def __init__(
        self,
        store: PartStore,
        first_index: int,
        embedding_width: int,
        explode_patches: bool,
        part_chips: int = 64,
        part_bytes: int = 256 * 1024 * 1024,
        part_seconds: float = 30.0,
        satclip_width: int | None = None,
    ) -> None:
        self.store = store
        self.index = first_index
        self.explode_patches = explode_patches
        self.satclip_width = satclip_width
        self.schema = chips_schema(embedding_width, exploded=explode_patches, satclip_width=satclip_width)
        self.part_chips, self.part_bytes, self.part_seconds = part_chips, part_bytes, part_seconds
        self.write_s = 0.0
        self.wait_s = 0.0
        self.parts_written = 0
        self._pending = _Pending()
        self._since = time.monotonic()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clay-parts")
        self._future: Future | None = None

    def add(
        self,
        records: Sequence[Any],
        embeddings: np.ndarray,
        nodata: Sequence[float],
        filled: Sequence[str],
        satclip: np.ndarray | None = None,
    ) -> None:
        if (satclip is None) != (self.satclip_width is None):
            raise ValueError("SatCLIP vectors must be given exactly when the job writes the satclip column")
        if satclip is not None:
            self._pending.satclip.append(np.asarray(satclip, dtype=np.float64))
        self._pending.records.extend(records)
        self._pending.embeddings.append(np.asarray(embeddings, dtype=np.float32))
        self._pending.nodata.extend(float(v) for v in nodata)
        self._pending.filled.extend([list(filled)] * len(records))
        self._maybe_flush()

    def add_skipped(self, chip_id: str, nodata_fraction: float) -> None:
        self._pending.skipped.append((chip_id, float(nodata_fraction)))
        self._maybe_flush()

    def add_failed(self, chip_id: str, reason: str) -> None:
        self._pending.failed.append((chip_id, reason))

    def _maybe_flush(self) -> None:
        pending = self._pending
        if (
            len(pending.records) + len(pending.skipped) >= self.part_chips
            or pending.nbytes >= self.part_bytes
            or time.monotonic() - self._since >= self.part_seconds
        ):
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, _Pending()
        self._since = time.monotonic()
        if not pending.records and not pending.skipped:
            self._pending.failed = pending.failed  # nothing settled yet: keep the failures for the next part
            return
        self._wait()
        self._future = self._executor.submit(self._write, pending, self.index)
        self.index += 1

    def _write(self, pending: _Pending, index: int) -> None:
        started = time.perf_counter()
        if pending.records:
            embeddings = np.concatenate(pending.embeddings)
            satclip = np.concatenate(pending.satclip) if pending.satclip else None
            table = chips_table(
                pending.records,
                embeddings,
                nodata_fractions=pending.nodata,
                filled_bands=pending.filled,
                explode_patches=self.explode_patches,
                satclip=satclip,
            )
        else:
            table = self.schema.empty_table()
        info = {
            "written": [r.chip_id for r in pending.records],
            "skipped": pending.skipped,
            "failed": pending.failed,
            "bbox": bbox_of_table(table),
        }
        self.store.write_part(index, table, info)
        self.parts_written += 1
        self.write_s += time.perf_counter() - started

    def _wait(self) -> None:
        if self._future is not None:
            started = time.perf_counter()
            self._future.result()  # re-raises a failed write here, in the pipeline's thread
            self.wait_s += time.perf_counter() - started
            self._future = None

    def close(self, quietly: bool = False) -> None:
        """Write what is buffered and wait for it; `quietly` (when the job already failed) swallows
        a write error so the original error is the one reported."""
        try:
            self.flush()
            self._wait()
        except Exception:
            if not quietly:
                raise
        finally:
            self._executor.shutdown(wait=True)
