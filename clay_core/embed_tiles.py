"""Embedding whole MGRS tiles, one output file per tile, in this process or fanned out on Dask.

Each tile is one task (`embed_tile`): it builds the tile's `EmbedJob` (embed_job.py), opens it and runs the
resumable pipeline into `{MGRS}_{MINDATE}_{MAXDATE}_v{VERSION}.gpq`. Dask distributed does the scheduling
(`--dask-scheduler ADDRESS` for an existing cluster, `--dask-workers N` for a LocalCluster); without
either, tiles run one after the other here. Both paths treat a failed tile alike (`_guarded`): whatever it
raised (an input problem or a crash), the tile is reported as {"tile", "error", "kind"} and the other tiles
go on. `clay embed-mgrs` then exits 0 only when every tile succeeded; see `exit_code`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clay_core.embed import EmbedOptions, partial_failure_message
from clay_core.errors import ClayInputError
from clay_core.parquet import output_name
from clay_core.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from clay_core.embed_job import EmbedJob


@dataclass(frozen=True)
class TileJob:
    """Everything a task needs (picklable: paths and options, no open files, no model)."""

    source: str  # folder / s3:// prefix / stac+https:// URL; "{mgrs}" is replaced by the tile id
    start: datetime.date
    end: datetime.date
    out_dir: str
    checkpoint: str | None = None
    preset: str | None = None
    chip_size: int | None = None
    stride: int | None = None
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    version: int = 1
    no_sign_request: bool = False
    options: EmbedOptions = field(default_factory=EmbedOptions)


def tile_embed_job(job: TileJob, tile: str) -> EmbedJob:
    """The embed job of one tile: its source, narrowed to the tile and the date range."""
    from clay_core.embed_job import EmbedJob

    return EmbedJob(
        sources=(job.source.replace("{mgrs}", tile).replace("{MGRS}", tile),),
        checkpoint=job.checkpoint,
        preset=job.preset,
        chip_size=job.chip_size,
        stride=job.stride,
        mgrs=tile,
        start=job.start,
        end=job.end,
        no_sign_request=job.no_sign_request,
        device=job.device,
        precision=job.precision,
        threads=job.threads,
        options=dataclasses.replace(
            job.options, metadata={**job.options.metadata, "mgrs": tile, "start": str(job.start), "end": str(job.end)}
        ),
    )


def embed_tile(tile: str, job: TileJob, reporter: Reporter | None = None) -> dict[str, Any]:
    """One task: returns {"tile", "output", "summary"}, or {"tile", "error", "kind": "input"} for an input
    problem (other exceptions propagate: the caller's `_guarded` reports them)."""
    from clay_core.grid.mgrs import parse_tile

    try:
        tile = parse_tile(tile).id
        opened = tile_embed_job(job, tile).open()
        records = opened.sources[0].records()
        if not records:
            raise ClayInputError(f"no chips of tile {tile} between {job.start} and {job.end} in {job.source}")
        dates = [r.date for r in records]
        summary = opened.run(
            Path(job.out_dir) / output_name(tile, min(dates), max(dates), job.version), reporter=reporter
        )
        result = {"tile": tile, "output": summary.output, "summary": summary.as_dict()}
        partial = partial_failure_message(summary)
        if partial:  # the good chips are in the output; the tile still counts as not done (exit code 2)
            result["partial"] = partial
        return result
    except ClayInputError as error:
        return {"tile": tile, "error": str(error), "kind": "input"}


def _guarded(tile: str, outcome: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The tile's result, or the error it raised as a result: one crashed tile never loses the others,
    run here or on Dask alike (KeyboardInterrupt still stops the whole job)."""
    try:
        return outcome()
    except Exception as error:  # noqa: BLE001 - reported per tile; see the module docstring
        return {"tile": tile, "error": f"{type(error).__name__}: {error}", "kind": "internal"}


def exit_code(results: Sequence[dict[str, Any]]) -> int:
    """0 when every tile succeeded; 2 when some failed and all failures were input problems (no chips in
    the date range, a bad tile id, ...); 1 when any tile crashed. Outputs of the tiles that succeeded are
    kept and listed either way. A tile whose output lacks chips that failed to read counts as an input problem."""
    kinds = {r.get("kind", "internal") for r in results if "error" in r}
    if not kinds:
        return 2 if any("partial" in r for r in results) else 0
    return 2 if kinds == {"input"} else 1


def embed_tiles(
    tiles: Sequence[str],
    job: TileJob,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    reporter: Reporter | None = None,
) -> list[dict[str, Any]]:
    """Embed every tile; results in the order tiles finish."""
    reporter = reporter or NullReporter()
    out_dir = Path(job.out_dir)
    if not out_dir.is_dir():
        raise ClayInputError(f"output folder {out_dir} does not exist; create it first")
    if job.start > job.end:
        raise ClayInputError(f"--start {job.start} is after --end {job.end}")
    if not scheduler and not workers:
        if len(tiles) == 1:  # one tile here: chip-level progress and live warnings
            result = _guarded(tiles[0], lambda: embed_tile(tiles[0], job, reporter))
            return [_reported(result, reporter, tiles_progress=False)]
        reporter.start(len(tiles), "tiles")
        return [
            _reported(_guarded(tile, functools.partial(embed_tile, tile, job, _LogOnly(reporter))), reporter)
            for tile in tiles
        ]
    reporter.start(len(tiles), "tiles")
    return _on_dask(tiles, job, scheduler, workers, lambda r: _reported(r, reporter, problems=True))


class _LogOnly:
    """Passes a tile's warnings on, but not its chip progress (the bar counts tiles)."""

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter

    def start(self, total: int | None, message: str = "") -> None: ...
    def advance(self, n: int = 1, message: str = "") -> None: ...
    def result(self, result: dict[str, Any]) -> None: ...
    def error(self, message: str, kind: str = "internal") -> None: ...
    def close(self) -> None: ...

    def log(self, message: str, level: str = "info") -> None:
        if level != "info":
            self._reporter.log(message, level)


def _reported(
    result: dict[str, Any], reporter: Reporter, tiles_progress: bool = True, problems: bool = False
) -> dict[str, Any]:
    """Log a finished tile (and, for remote tasks, its skipped chips) and count it."""
    tile = result["tile"]
    if "error" in result:
        reporter.log(f"tile {tile}: {result['error']}", "warning")
    else:
        summary = result["summary"]
        for problem in summary["problems"] if problems else ():
            reporter.log(f"tile {tile}: skipped chip {problem['chip_id']}: {problem['reason']}", "warning")
        reporter.log(f"tile {tile}: {summary['chips_written']} chips -> {result['output']}")
    if tiles_progress:
        reporter.advance(1, tile)
    return result


def _on_dask(
    tiles: Sequence[str],
    job: TileJob,
    scheduler: str | None,
    workers: int | None,
    on_result: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    import dask
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    # DataLoader reader processes need non-daemonic Dask workers; share the CPUs between workers.
    with dask.config.set({"distributed.worker.daemon": False}):
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(
                n_workers=int(workers or 1), threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster)
            if job.threads is None:
                job = dataclasses.replace(job, threads=max(1, (os.cpu_count() or 1) // int(workers or 1)))
        try:
            futures = client.map(embed_tile, list(tiles), job=job, pure=False)
            results = []
            for future, tile in _with_tiles(as_completed(futures), futures, tiles):
                results.append(on_result(_guarded(tile, future.result)))
            return results
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _with_tiles(completed: Any, futures: Sequence[Any], tiles: Sequence[str]):
    tile_of = {future.key: tile for future, tile in zip(futures, tiles, strict=True)}
    for future in completed:
        yield future, tile_of[future.key]
