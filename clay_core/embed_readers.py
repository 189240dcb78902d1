"""Reading chips for the embedding pipeline: DataLoader reader processes, batch order, the readers' GDAL cache.

Workers read chips and hand over pixels (or why there are none); chips above max_nodata are skipped in the
worker, so no pixels travel back for them. Batches never mix sources, and each reader gets one contiguous
run of batches, so it reads neighbouring windows of the same files.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clay_core.errors import ClayInputError
from clay_core.provenance import redact

if TYPE_CHECKING:
    from clay_core.embed import EmbedOptions
    from clay_core.sources.base import ChipRecord, ChipSource

# One chip to embed: (index of its source in the job's list, its record).
WorkItem = tuple[int, "ChipRecord"]


class ChipBatch(TypedDict):
    """What the readers hand the model loop: the good chips of one source, and the chips left out."""

    source_index: int
    pixels: torch.Tensor | None  # float32 [B, C, H, W] of `records`; None when no chip of the batch is good
    records: list[ChipRecord]
    nodata: list[float]  # nodata fraction per record
    skipped: list[tuple[ChipRecord, float]]  # over max_nodata: (record, nodata fraction)
    failed: list[tuple[ChipRecord, str]]  # unreadable: (record, why)
    read_s: float  # reading time summed over the batch's chips


@dataclass
class _Loaded:
    """One chip as a worker hands it over: pixels, or why there are none."""

    source_index: int
    record: ChipRecord
    pixels: np.ndarray | None
    nodata_fraction: float
    failure: str | None
    read_s: float


class _ChipDataset(Dataset):
    def __init__(self, sources: Sequence[ChipSource], work: Sequence[WorkItem], max_nodata: float) -> None:
        self.sources = list(sources)
        self.work = list(work)
        self.max_nodata = max_nodata

    def __len__(self) -> int:
        return len(self.work)

    def __getitem__(self, index: int) -> _Loaded:
        from clay_core.sources.base import ChipReadError

        source_index, record = self.work[index]
        started = time.perf_counter()
        try:
            chip = self.sources[source_index].read(record)
        except ChipReadError as error:
            return _Loaded(source_index, record, None, math.nan, redact(str(error)), time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - an unexpected reader error must not stop the job
            reason = redact(f"{type(error).__name__}: {error}")
            return _Loaded(source_index, record, None, math.nan, reason, time.perf_counter() - started)
        fraction = float(chip.nodata_fraction)
        pixels = None if fraction > self.max_nodata else np.ascontiguousarray(chip.pixels, dtype=np.float32)
        return _Loaded(source_index, record, pixels, fraction, None, time.perf_counter() - started)


def _collate(items: list[_Loaded]) -> ChipBatch:
    """A batch: stacked pixels of the good chips (a tensor, so pin_memory applies) and the rest as lists."""
    good = [(item, item.pixels) for item in items if item.pixels is not None]
    shapes = {pixels.shape for _, pixels in good}
    if len(shapes) > 1:
        raise ClayInputError(f"chips of one source have different shapes {sorted(shapes)}")
    stacked = torch.from_numpy(np.stack([pixels for _, pixels in good])) if good else None
    return {
        "source_index": items[0].source_index,
        "pixels": stacked,
        "records": [item.record for item, _ in good],
        "nodata": [item.nodata_fraction for item, _ in good],
        "skipped": [
            (item.record, item.nodata_fraction) for item in items if item.failure is None and item.pixels is None
        ],
        "failed": [(item.record, item.failure) for item in items if item.failure is not None],
        "read_s": sum(item.read_s for item in items),
    }


def _batches_per_source(work: Sequence[WorkItem], batch_size: int) -> list[list[int]]:
    """Index batches that never mix sources (a batch is prepared with one band list)."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index, (source_index, _) in enumerate(work):
        if current and (len(current) == batch_size or work[current[0]][0] != source_index):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


READER_GDAL_CACHE_MB = 256


def limit_gdal_cache(megabytes: int = READER_GDAL_CACHE_MB) -> None:
    """Cap GDAL's block cache in this process unless the user set GDAL_CACHEMAX.

    GDAL's default is 5% of RAM per process (1.2 GB on a 24 GB machine) and every reader process fills
    it with decoded blocks it never needs again: chips are streamed, each block is read about once.
    GDAL reads GDAL_CACHEMAX only once, and a forked reader inherits the parent's setting, so the
    limit is applied through GDALSetCacheMax64 on the libgdal this process has loaded."""
    import ctypes
    import os

    if "GDAL_CACHEMAX" in os.environ:
        return
    os.environ["GDAL_CACHEMAX"] = str(megabytes)  # for a GDAL that has not started its cache yet
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            library = next(line.split()[-1] for line in maps if "/libgdal.so" in line)
        ctypes.CDLL(library).GDALSetCacheMax64(ctypes.c_int64(megabytes * 1024 * 1024))
    except (OSError, StopIteration, AttributeError):
        pass  # not Linux or GDAL not loaded yet: the environment variable applies


def contiguous_per_worker(batches: list[list[int]], workers: int) -> list[list[int]]:
    """Order batches so that each reader process gets one contiguous run of them.

    DataLoader hands batch i to worker i mod n; dealt round-robin, neighbouring chips land in different
    processes and both decode the image blocks on their shared border (measured: 30% more reader CPU on
    1024 px-tiled JP2s). Results are matched by chip id, so the arrival order does not matter."""
    if workers <= 1:
        return batches
    # Runs differ in length by at most one, longer runs first: then the round-robin never shifts a run's tail
    # onto another worker.
    base, longer = divmod(len(batches), workers)
    sizes = [base + 1] * longer + [base] * (workers - longer)
    starts = [sum(sizes[:w]) for w in range(workers)]
    runs = [batches[start : start + size] for start, size in zip(starts, sizes, strict=True)]
    return [run[k] for k in range(max(sizes)) for run in runs if k < len(run)]


def _reader_init(_worker_id: int, tied_to_parent: bool = True) -> None:
    """Reader processes decode one chip each: GDAL's own decoder threads would only oversubscribe the CPUs.
    They die with the main process (a kill -9 of it must not leave orphans reading on) and do not keep its
    output lock (a re-run right after the kill must find the output free)."""
    import os

    from clay_core.embed_parts import release_inherited_locks

    if tied_to_parent:
        die_with_parent()
    release_inherited_locks()
    os.environ.setdefault("GDAL_NUM_THREADS", "1")
    limit_gdal_cache()


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG); without it
    DataLoader readers notice a dead parent only by polling (about 5 s). Elsewhere a no-op."""
    import ctypes
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the prctl took effect
        os._exit(1)


def _in_daemon_process() -> bool:
    """Daemonic processes (e.g. Dask workers by default) cannot start DataLoader workers."""
    return bool(multiprocessing.current_process().daemon)


def iterate_batches(
    sources: Sequence[ChipSource], work: Sequence[WorkItem], options: EmbedOptions, pin_memory: bool
) -> Iterator[ChipBatch]:
    workers = 0 if _in_daemon_process() else min(options.workers, max(1, len(work)))
    if not workers:
        limit_gdal_cache()  # reading happens here
    loader = DataLoader(
        _ChipDataset(sources, work, options.max_nodata),
        batch_sampler=contiguous_per_worker(_batches_per_source(work, options.batch_size), workers),
        collate_fn=_collate,
        num_workers=workers,
        prefetch_factor=options.prefetch if workers else None,
        pin_memory=pin_memory,
        persistent_workers=False,
        # PR_SET_PDEATHSIG fires when the creating *thread* ends: only tie readers made by the main thread
        # (a Dask task runs in a pool thread; DataLoader's own parent check still ends those readers).
        worker_init_fn=functools.partial(
            _reader_init, tied_to_parent=threading.current_thread() is threading.main_thread()
        )
        if workers
        else None,
    )
    return iter(loader)
