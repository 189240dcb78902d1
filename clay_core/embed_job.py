"""One embed job, built in one place: what to embed, with which model, into which file.

    job = EmbedJob(sources=("scene/",), output=Path("out.gpq"), preset="clay-v0-tiny", chip_size=128)
    job.estimate(reporter)   # the dry run: chips, seconds, bytes (nothing written)
    job.run(reporter)        # -> EmbedSummary (resumable; see embed.py)

`open()` loads the model and opens the sources once, with the chip size decided once (the job's, else
the model's own `image_size`). `clay embed` (and so the QGIS worker, which runs it), the per-tile task of
`clay embed-mgrs` (in this process or on Dask) and benchmarks/pipeline.py all build an `EmbedJob`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clay_core.errors import ClayInputError
from clay_core.progress import NullReporter, Reporter
from clay_core.validate import GEOPARQUET_SUFFIXES

if TYPE_CHECKING:
    from clay_core.embed import EmbedOptions, EmbedSummary
    from clay_core.models.registry import EmbeddingModel
    from clay_core.sources.base import ChipData, ChipRecord, ChipSource

OUTPUT_SUFFIXES = GEOPARQUET_SUFFIXES  # the one list validate.output_file checks too


def _default_options() -> EmbedOptions:
    from clay_core.embed import EmbedOptions

    return EmbedOptions()


@dataclass(frozen=True)
class EmbedJob:
    """The typed spec of one embed job (picklable: paths and options, no open files, no model)."""

    sources: tuple[str, ...]  # chip folders, s3:// prefixes, Sentinel-2 band files, rasters (see sources/)
    output: Path | None = None  # None: given to `OpenedJob.run` (a tile's name depends on its chips' dates)
    checkpoint: str | None = None
    preset: str | None = None  # a model preset with random weights (tests, benchmarks)
    chip_size: int | None = None  # None: the model's image size
    stride: int | None = None  # None: the chip size
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str | None = None
    date: datetime.date | None = None  # when the files do not tell it
    band_map: Mapping[str, int | str] | None = None
    resolution_m: float | None = None  # metres per pixel of the chips (rasters are resampled; None: 10)
    mgrs: str | None = None  # only chips of this MGRS tile ...
    start: datetime.date | None = None  # ... acquired between start and end
    end: datetime.date | None = None
    no_sign_request: bool = False
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    options: EmbedOptions = field(default_factory=_default_options)

    def check(self) -> None:
        """Input problems that need neither the model nor the sources."""
        if self.output is not None and self.output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ClayInputError(f"output {self.output.name} should end in {' or '.join(OUTPUT_SUFFIXES)}")
        self.options.check()
        if self.resolution_m is not None and not 0 < self.resolution_m < float("inf"):
            raise ClayInputError(f"--resolution {self.resolution_m} must be a positive number of metres per pixel")

    def open(self, reporter: Reporter | None = None) -> OpenedJob:
        """Load the model (and the SatCLIP model, so a wrong file fails first), then open the sources.
        With a reporter, say which models were loaded."""
        satclip_check(self.options.satclip, reporter)
        model = self.load_model()
        if reporter is not None:
            plan = model.plan
            reporter.log(f"model {model.name} on {plan.device} ({plan.name}), {plan.precision}: {plan.reason}")
            if self.preset and not self.checkpoint and not _has_shipped_weights(self.preset):
                reporter.log(
                    f"{self.preset} has random weights: its embeddings say nothing about the imagery; give a "
                    "checkpoint with released Clay weights (--checkpoint FILE; in QGIS: Checkpoint file)",
                    "warning",
                )
        chip_size = self.chip_size or model.image_size
        return OpenedJob(self, model, self.open_sources(chip_size), chip_size)

    def load_model(self) -> EmbeddingModel:
        from clay_core.models.registry import load_image_model

        return load_image_model(
            self.checkpoint,
            self.preset,
            image_size=self.chip_size,
            device=self.device,
            precision=self.precision,
            threads=self.threads,
        )

    def open_sources(self, chip_size: int | None) -> list[ChipSource]:
        """The job's sources as one source (several files of a scene belong together), at `chip_size`."""
        from clay_core.sources import open_source

        spec: str | list[str] = list(self.sources) if len(self.sources) > 1 else self.sources[0]
        # Options that are None count as not given: rasters take the bbox, folders and STAC the tile and dates.
        source = open_source(
            spec,
            chip_size=chip_size,
            stride=self.stride,
            no_sign_request=self.no_sign_request or None,
            bbox=self.bbox,
            bbox_crs=self.bbox_crs,
            date=self.date,
            band_map=dict(self.band_map) if self.band_map else None,
            resolution_m=self.resolution_m,
            mgrs=self.mgrs,
            start=self.start,
            end=self.end,
        )
        if self.mgrs or self.start or self.end:
            return [TileDatesSource(source, self.mgrs, self.start, self.end)]
        return [source]

    def estimate(self, reporter: Reporter | None = None) -> dict[str, Any]:
        """The dry run: chips, estimated seconds and bytes, from one tiny measured batch; nothing is written."""
        self.check()
        estimate = self.open(reporter).estimate()
        if self.output is not None:
            from clay_core.embed_estimate import output_exists_message

            note = output_exists_message(self.output)
            if note:
                estimate["output_note"] = note
        return estimate

    def run(self, reporter: Reporter | None = None) -> EmbedSummary:
        """Embed every chip into `output` (resuming an interrupted run)."""
        from clay_core.parquet import check_writable

        self.check()
        if self.output is None:
            raise ValueError("EmbedJob.run needs an output; or open() and pass it to OpenedJob.run")
        check_writable(self.output, self.options.overwrite)  # fail before the model loads
        return self.open(reporter).run(reporter=reporter)


@dataclass
class OpenedJob:
    """A job with its model loaded and its sources open."""

    job: EmbedJob
    model: EmbeddingModel
    sources: list[ChipSource]
    chip_size: int | None  # the job's, else the model's image size

    @property
    def level(self) -> str:
        return self.model.check_level(self.job.options.level)

    def estimate(self, sample_chips: int = 2) -> dict[str, Any]:
        from clay_core.embed_estimate import estimate_job

        return estimate_job(self.sources, self.model, self.job.options, sample_chips=sample_chips)

    def run(
        self, output: Path | None = None, options: EmbedOptions | None = None, reporter: Reporter | None = None
    ) -> EmbedSummary:
        """Embed into `output` (default: the job's) with `options` (default: the job's)."""
        from clay_core import embed  # looked up at call time: tests replace embed_sources

        target = output or self.job.output
        if target is None:
            raise ValueError("no output: give EmbedJob.output or OpenedJob.run(output)")
        return embed.embed_sources(
            self.sources, self.model, target, options or self.job.options, reporter or NullReporter()
        )


def _has_shipped_weights(preset: str) -> bool:
    from clay_core.models.registry import get_preset, presets

    return preset in presets() and bool(get_preset(preset).checkpoint)


def satclip_check(satclip: str | None, reporter: Reporter | None = None) -> None:
    """Load the SatCLIP model of the `satclip` column now, so a wrong file fails before the image model
    and the sources are opened (it is cached: the run reuses it)."""
    from clay_core.locations import load_satclip

    if satclip:
        model = load_satclip(satclip)
        if reporter is not None:
            reporter.log(f"SatCLIP column from {model.name} (L={model.config.legendre_polys})")


@dataclass
class TileDatesSource:
    """A source narrowed to one MGRS tile and a date range (scenes do not filter by date themselves)."""

    inner: ChipSource
    tile: str | None
    start: datetime.date | None
    end: datetime.date | None

    @property
    def bands(self) -> tuple[str, ...]:
        return self.inner.bands

    def records(self) -> list[ChipRecord]:
        return [r for r in self.inner.records() if self._wanted(r)]

    def _wanted(self, record: ChipRecord) -> bool:
        if self.tile is not None and record.mgrs is not None and record.mgrs != self.tile:
            return False
        return (self.start is None or record.date >= self.start) and (self.end is None or record.date <= self.end)

    def read(self, record: ChipRecord) -> ChipData:
        return self.inner.read(record)
