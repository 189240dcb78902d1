"""The embedding pipeline: sources -> chip records -> batches -> model -> GeoParquet (resumable).

    records = source.records()                    cheap, no pixels
    DataLoader workers read chips in parallel     source.read(record) -> raw pixels, nodata fraction
        chips above max_nodata are skipped there  (no pixels travel back for them)
        bad chips (ChipReadError) become failures with their reason; the job goes on
    main process: model.prepare -> model.embed    normalise, fill NaN with the mean, lat/lon/time inputs
        (opt-in) SatCLIP of the chip centres      float64 location embedding, `satclip` column
    background thread writes part files           OUT.gpq.parts/part-NNNNN.parquet, each atomic
    at the end: parts -> OUT.gpq (temp + rename)

Reading overlaps compute because the DataLoader prefetches batches in worker processes while the main
process runs the model, and writing overlaps because parts are written on a thread. Killed at any
point, a re-run resumes from the parts by chip_id (embed_parts.py). The readers are in embed_readers.py,
the dry run in embed_estimate.py, and the job spec the front ends build (EmbedJob) in embed_job.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clay_core.embed_parts import PartStore, PartWriter, fingerprint
from clay_core.embed_readers import WorkItem, iterate_batches
from clay_core.errors import ClayInputError
from clay_core.locations import load_satclip, satclip_metadata, satclip_vectors, satclip_width
from clay_core.parquet import check_writable, chips_schema
from clay_core.progress import NullReporter, Reporter, redacted
from clay_core.provenance import public_source

if TYPE_CHECKING:
    from clay_core.models.registry import EmbeddingModel
    from clay_core.models.satclip import SatCLIPLocationModel
    from clay_core.sources.base import ChipRecord, ChipSource

MAX_PROBLEMS_LISTED = 50


@dataclass(frozen=True)
class EmbedOptions:
    level: str | None = None  # None: the model's default level
    batch_size: int = 8
    workers: int = 2  # DataLoader reader processes (0: read in the main process, no overlap)
    prefetch: int = 2  # batches each worker reads ahead
    max_nodata: float = 0.5  # skip chips with a larger share of nodata pixels
    explode_patches: bool = False  # patch level: one row per patch with its own polygon
    overwrite: bool = False
    part_chips: int = 64  # chips settled per part file: how much work a kill can lose at most
    part_seconds: float = 30.0  # ... or this much time, whichever comes first
    metadata: Mapping[str, Any] = field(default_factory=dict)  # extra keys for the `clay` metadata
    satclip: str | None = None  # SatCLIP checkpoint or preset: adds the `satclip` column (chip centres)

    def check(self) -> None:
        if self.batch_size < 1:
            raise ClayInputError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ClayInputError(f"--workers must be >= 0, got {self.workers}")
        if not 0.0 <= self.max_nodata <= 1.0:
            raise ClayInputError(f"--max-nodata must be between 0 and 1, got {self.max_nodata}")


@dataclass
class ChipProblem:
    chip_id: str
    source_url: str
    reason: str


@dataclass
class EmbedSummary:
    output: str
    model: str
    level: str
    device: str
    precision: str
    chips_total: int = 0
    chips_written: int = 0  # in the output, this run and earlier interrupted runs together
    chips_resumed: int = 0  # settled by earlier runs (their parts were reused)
    chips_skipped_nodata: int = 0
    chips_failed: int = 0
    rows: int = 0
    seconds: float = 0.0
    chips_per_s: float = 0.0  # chips embedded by this run per second of this run
    read_wait_s: float = 0.0  # model waiting for data (reading not hidden behind compute)
    read_s: float = 0.0  # reading time summed over the reader processes
    model_s: float = 0.0  # prepare + embed
    satclip_s: float = 0.0  # SatCLIP location embeddings of the chip centres (when asked for)
    write_s: float = 0.0  # part files (background thread) + the final merge
    output_bytes: int = 0
    problems: list[ChipProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        result["problems"] = result["problems"][:MAX_PROBLEMS_LISTED]
        return result

    def describe(self) -> str:
        return (
            f"{self.chips_written} chips written ({self.chips_resumed} from an earlier run), "
            f"{self.chips_skipped_nodata} skipped for nodata, {self.chips_failed} failed; "
            f"{self.chips_per_s:.2f} chips/s; time: read wait {self.read_wait_s:.1f} s "
            f"(reading {self.read_s:.1f} s in workers), model {self.model_s:.1f} s, "
            + (f"SatCLIP {self.satclip_s:.1f} s, " if self.satclip_s else "")
            + f"write {self.write_s:.1f} s"
        )


# ----------------------------------------------------------------------------------------------
# The job
# ----------------------------------------------------------------------------------------------


def collect_records(sources: Sequence[ChipSource]) -> list[WorkItem]:
    """(source index, record) for every chip of every source; chip ids must be unique across sources."""
    work: list[WorkItem] = []
    seen: dict[str, int] = {}
    for source_index, source in enumerate(sources):
        for record in source.records():
            if record.chip_id in seen:
                raise ClayInputError(
                    f"chip id {record.chip_id} appears in sources {seen[record.chip_id] + 1} and {source_index + 1}; "
                    "give each source its own output"
                )
            seen[record.chip_id] = source_index
            work.append((source_index, record))
    return work


def check_chip_size(model: EmbeddingModel, work: Sequence[WorkItem]) -> None:
    """Chips must have the size the model was set up for: it fixes the position grid (v0) and the
    patch grid the output's embedding shape is declared with (v1.5 would run, then not fit its column)."""
    expected = model.image_size
    # A size of 0 means "not known before reading" (e.g. a chip file whose header is damaged).
    sizes = {int(record.size) for _, record in work if record.size and int(record.size) > 0}
    wrong = sorted(sizes - {expected}) if expected else []
    if wrong:
        raise ClayInputError(
            f"chips are {wrong[0]} px but {model.name} is set up for {expected} px chips; load it "
            f"with image_size={wrong[0]} (CLI: --chip-size {wrong[0]})"
        )


def weights_fingerprint(model: EmbeddingModel) -> str:
    """sha256 of the checkpoint, or of the weights themselves for a preset (random weights differ per
    process: parts embedded by another random model must never be mixed in)."""
    if model.checkpoint_sha256:
        return str(model.checkpoint_sha256)
    from clay_core.checkpoints import state_dict_sha256

    return "weights:" + state_dict_sha256(model)


def _job_identity(
    model: EmbeddingModel,
    level: str,
    sources: Sequence[ChipSource],
    work: Sequence[WorkItem],
    options: EmbedOptions,
    satclip: SatCLIPLocationModel | None = None,
) -> dict[str, Any]:
    """What must match for parts of an earlier run to be reused."""
    identity = {
        "model": model.name,
        "weights_sha256": weights_fingerprint(model),
        "level": level,
        "explode_patches": options.explode_patches,
        "max_nodata": options.max_nodata,
        "bands": [list(source.bands) for source in sources],
        "chips": len(work),
        "chips_fingerprint": fingerprint(record for _, record in work),
    }
    if satclip is not None:  # absent (not None) without SatCLIP: parts of earlier versions still resume
        identity["satclip"] = weights_fingerprint(satclip)
    return identity


def embedded_bands(sources: Sequence[ChipSource]) -> tuple[str, ...] | None:
    """The band list every source gives the model, or None when the sources differ."""
    band_sets = {tuple(source.bands) for source in sources}
    return band_sets.pop() if len(band_sets) == 1 else None


def model_metadata(model: EmbeddingModel, level: str, sources: Sequence[ChipSource]) -> dict[str, Any]:
    """`model.metadata(level, bands)`: for models that embed exactly the bands they are given (v1.5), the
    bands, wavelengths and normalisation listed are those of the sources, not every band the model knows;
    when the sources give different bands, each source's list is added."""
    bands = embedded_bands(sources)
    meta = dict(model.metadata(level, bands=bands))
    if bands is None:
        meta["bands_per_source"] = [list(source.bands) for source in sources]
    return meta


def filled_bands_note(model: EmbeddingModel, sources: Sequence[ChipSource]) -> str | None:
    """One line naming the bands the model reads that no source gives (filled with their mean): said before the
    run, because three RGB bands into a ten-band Clay v0 model embed without error but mostly from the fill."""
    missing = {band for source in sources for band in model.filled_bands(source.bands)}
    if not missing:
        return None
    ordered = [band for band in model.input_bands if band in missing]
    return (
        f"{len(ordered)} of the model's bands are not in the input and are filled with their mean: "
        f"{', '.join(ordered)} (the file lists them in filled_bands)"
    )


def _clay_metadata(
    model: EmbeddingModel,
    level: str,
    sources: Sequence[ChipSource],
    options: EmbedOptions,
    satclip: SatCLIPLocationModel | None = None,
) -> dict[str, Any]:
    meta = model_metadata(model, level, sources)
    source_bands = sorted({band for source in sources for band in source.bands})
    meta.update(
        source_bands=source_bands,
        filled_bands=list(model.filled_bands(source_bands)),
        max_nodata=options.max_nodata,
        nodata_fill="band mean (0 after normalisation)",
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    if satclip is not None:
        meta["satclip"] = satclip_metadata(satclip)
    meta.update(redacted(dict(options.metadata)))  # a caller's extra keys may quote a URL: no credentials in them
    return meta


def _lonlat_and_dates(records: Sequence[ChipRecord]) -> tuple[np.ndarray, list[datetime.date]]:
    return np.array([r.center_lonlat for r in records], dtype=np.float64), [r.date for r in records]


def run_model(
    model: EmbeddingModel, pixels: torch.Tensor, bands: Sequence[str], records: Sequence[ChipRecord], level: str
) -> np.ndarray:
    """prepare + embed one batch; float32 numpy [B, *embedding_shape]."""
    lonlat, dates = _lonlat_and_dates(records)
    batch = model.prepare(pixels, bands, lonlat, dates, gsd_m=float(records[0].resolution_m))
    return model.embed(batch, level).numpy()


def embed_sources(
    sources: Sequence[ChipSource],
    model: EmbeddingModel,
    output: str | Path,
    options: EmbedOptions = EmbedOptions(),
    reporter: Reporter | None = None,
) -> EmbedSummary:
    """Embed every chip of `sources` with `model` into the GeoParquet file `output` (resumable)."""
    options.check()
    reporter = reporter or NullReporter()
    output = Path(output).expanduser().absolute()
    check_writable(output, options.overwrite)
    level = model.check_level(options.level)
    row_width = _row_width(model, level, options)
    satclip = load_satclip(options.satclip) if options.satclip else None
    work = collect_records(sources)
    check_chip_size(model, work)
    summary = EmbedSummary(
        output=str(output),
        model=model.name,
        level=level,
        device=model.plan.device,
        precision=model.plan.precision,
        chips_total=len(work),
    )
    store = PartStore(output, _job_identity(model, level, sources, work, options, satclip))
    started = time.perf_counter()
    claimed = False
    try:
        prior = store.open(discard_other_job=options.overwrite)
        claimed = True
        damage = prior.describe_damage(store.folder)
        if damage:
            reporter.log(damage, "warning")
        todo = [(s, r) for s, r in work if r.chip_id not in prior.settled]
        summary.chips_resumed = len(work) - len(todo)
        if summary.chips_resumed:
            reporter.log(f"resuming: {summary.chips_resumed} of {len(work)} chips done by an earlier run")
        reporter.log(
            f"embedding {len(todo)} chips with {model.name} ({level}) on {model.plan.device} {model.plan.precision}"
        )
        note = filled_bands_note(model, sources)
        if note:
            reporter.log(note)
        writer = PartWriter(
            store,
            prior.next_index,
            row_width,
            options.explode_patches,
            part_chips=max(options.part_chips, options.batch_size),
            part_seconds=options.part_seconds,
            satclip_width=satclip_width(satclip),
        )
        reporter.start(len(work), "embedding")
        if summary.chips_resumed:
            reporter.advance(summary.chips_resumed, "resumed")
        try:
            done_now = _embed_loop(sources, model, level, todo, options, writer, summary, reporter, started, satclip)
        except BaseException:
            writer.close(quietly=True)  # keep what was computed: an interrupted run resumes from it
            raise
        writer.close()
        summary.write_s += writer.write_s
        _check_outcome(summary, done_now, prior.written, sources, model, options)
        merge_started = time.perf_counter()
        summary.rows, summary.chips_written = store.merge(
            chips_schema(row_width, exploded=options.explode_patches, satclip_width=satclip_width(satclip)),
            _clay_metadata(model, level, sources, options, satclip),
            options.explode_patches,
            model.embedding_shape(level),
            options.overwrite,
        )
        summary.write_s += time.perf_counter() - merge_started
        summary.chips_skipped_nodata += len(prior.skipped)
        write_failures(output, summary)
    except BaseException as error:
        # Keep a folder that holds embeddings (the next run resumes from it); one with nothing worth
        # resuming (a run that failed at the start, read nothing or only nodata) is not left behind.
        kept = claimed and store.holds_embeddings()
        if claimed and not kept:
            store.discard()
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ClayInputError(
                f"the disk is full (writing {error.filename or output}): free some space and run "
                "the same command again" + (f"; it resumes from the chips kept in {store.folder}" if kept else "")
            ) from None
        raise
    finally:
        store.close()
    summary.seconds = time.perf_counter() - started
    summary.chips_per_s = done_now / summary.seconds if summary.seconds > 0 else 0.0
    summary.output_bytes = output.stat().st_size
    return summary


def _row_width(model: EmbeddingModel, level: str, options: EmbedOptions) -> int:
    shape = model.embedding_shape(level)
    if not options.explode_patches:
        return int(np.prod(shape))
    if len(shape) == 3:
        return int(shape[-1])
    if len(shape) == 4:
        return int(shape[0] * shape[-1])
    raise ClayInputError(f"--explode-patches needs --level patch (or group); level {level!r} has one vector per chip")


def _embed_loop(
    sources: Sequence[ChipSource],
    model: EmbeddingModel,
    level: str,
    todo: Sequence[WorkItem],
    options: EmbedOptions,
    writer: PartWriter,
    summary: EmbedSummary,
    reporter: Reporter,
    started: float,
    satclip: SatCLIPLocationModel | None = None,
) -> int:
    """Run every batch; returns the number of chips embedded by this run."""
    pin = model.plan.torch_device.type == "cuda"
    filled = [list(model.filled_bands(source.bands)) for source in sources]
    embedded = 0
    batches = iterate_batches(sources, todo, options, pin_memory=pin)
    while True:
        waited = time.perf_counter()
        batch = next(batches, None)
        summary.read_wait_s += time.perf_counter() - waited
        if batch is None:
            break
        summary.read_s += batch["read_s"]
        source_index = batch["source_index"]
        if batch["pixels"] is not None:
            computing = time.perf_counter()
            vectors = run_model(model, batch["pixels"], sources[source_index].bands, batch["records"], level)
            summary.model_s += time.perf_counter() - computing
            locations = None
            if satclip is not None:
                locating = time.perf_counter()
                locations = satclip_vectors(satclip, batch["records"])
                summary.satclip_s += time.perf_counter() - locating
            writer.add(batch["records"], vectors, batch["nodata"], filled[source_index], locations)
            embedded += len(batch["records"])
        for record, fraction in batch["skipped"]:
            writer.add_skipped(record.chip_id, fraction)
            summary.chips_skipped_nodata += 1
        for record, reason in batch["failed"]:
            writer.add_failed(record.chip_id, reason)
            summary.chips_failed += 1
            summary.problems.append(ChipProblem(record.chip_id, public_source(record.source_url), reason))
            if summary.chips_failed <= FAILURES_LOGGED:
                reporter.log(f"skipped chip {record.chip_id}: {reason}", "warning")
            elif summary.chips_failed == FAILURES_LOGGED + 1:
                reporter.log("more chips failed: the summary counts them all", "warning")
        elapsed = time.perf_counter() - started
        reporter.advance(
            len(batch["records"]) + len(batch["skipped"]) + len(batch["failed"]),
            f"{embedded / elapsed:.2f} chips/s" if elapsed > 0 else "",
        )
    return embedded


def _check_outcome(
    summary: EmbedSummary,
    embedded_now: int,
    written_before: set[str],
    sources: Sequence[ChipSource] = (),
    model: EmbeddingModel | None = None,
    options: EmbedOptions = EmbedOptions(),
) -> None:
    """A job that embedded nothing is an input problem, not an empty result: every chip failed, the raster
    is smaller than one chip, or every chip is nodata."""
    if embedded_now or written_before:
        return
    if summary.chips_failed:
        first = summary.problems[0]
        raise ClayInputError(
            f"no chip could be read ({summary.chips_failed} failed); first: {first.chip_id}: {first.reason}"
        )
    if not summary.chips_total:
        raise ClayInputError("the sources hold no chip to embed (check the bbox, the dates and the tile)")
    chip = model.image_size if model is not None else None
    small = [
        size
        for size in (_coverage_px(source) for source in sources)
        if size and chip and (size[0] < chip or size[1] < chip)
    ]
    if small and len(small) == len(sources):
        width, height = small[0]
        raise ClayInputError(
            f"the raster (or the part inside the bbox) is {width} x {height} px at 10 m, smaller "
            f"than one chip ({chip} px): give a larger area or a smaller --chip-size"
        )
    raise ClayInputError(
        f"all {summary.chips_total} chips are nodata (more than --max-nodata "
        f"{options.max_nodata:g} of their pixels): check the bbox, the rasters' nodata value, or "
        "raise --max-nodata"
    )


def _coverage_px(source: ChipSource) -> tuple[int, int] | None:
    """Width and height in chip pixels of what a raster source covers, when it can tell."""
    coverage = getattr(source, "coverage", None)
    resolution = getattr(source, "resolution_m", None)
    if not coverage or not resolution:
        return None
    xmin, ymin, xmax, ymax = coverage
    return round((xmax - xmin) / resolution), round((ymax - ymin) / resolution)


FAILURES_LOGGED = 3  # chip failures logged as they happen; all of them go to the sidecar file


def failures_path(output: Path) -> Path:
    """The sidecar that lists the chips a run could not embed: OUT.gpq.failures.json."""
    return output.with_name(output.name + ".failures.json")


def write_failures(output: Path, summary: EmbedSummary) -> None:
    """List every failed chip beside the output (or remove an old list when none failed)."""
    import json

    from clay_core.atomic import atomic_output

    sidecar = failures_path(output)
    if not summary.chips_failed:
        sidecar.unlink(missing_ok=True)
        return
    listing = {
        "output": str(output),
        "chips_total": summary.chips_total,
        "chips_failed": summary.chips_failed,
        "chips_written": summary.chips_written,
        "failures": [dataclasses.asdict(problem) for problem in summary.problems],
    }
    with atomic_output(sidecar) as temporary:
        temporary.write_text(json.dumps(listing, indent=1), encoding="utf-8")


def partial_failure_message(summary: EmbedSummary) -> str | None:
    """The one line for a run that wrote the good chips but not all (exit code 2), or None."""
    if not summary.chips_failed:
        return None
    first = summary.problems[0] if summary.problems else None
    return (
        f"{summary.chips_failed} of {summary.chips_total} chips failed and are not in {summary.output} "
        f"({summary.chips_written} written); they are listed in {failures_path(Path(summary.output))}"
        + (f"; first: {first.chip_id}: {first.reason}" if first else "")
    )
