"""One location-embedding job: points (a file, or a lon/lat grid over a bbox) -> SatCLIP -> a GeoParquet file.

    job = LocationJob(output=Path("sites.gpq"), checkpoint="satclip-resnet18-l10.ckpt", points="sites.csv")
    summary = job.run(reporter)   # -> LocationSummary; summary.as_dict() is what `clay embed-locations` reports

`clay embed-locations` (and so the QGIS algorithm clay:embedlocations, whose worker runs that command) builds
a `LocationJob`. Reading, grids and the file layout live in clay_core.locations; this module is the batch loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clay_core.errors import ClayInputError
from clay_core.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from clay_core.locations import PointSet

DEFAULT_BATCH_SIZE = 8192  # points per forward pass: a few MB of activations for SatCLIP's small MLP


@dataclass(frozen=True)
class LocationSummary:
    """What one run did (the command's result event)."""

    output: Path
    points: int
    model: str
    embedding_dim: int
    device: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "points": self.points,
            "model": self.model,
            "embedding_dim": self.embedding_dim,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "points_per_second": round(self.points / self.seconds, 1) if self.seconds > 0 else None,
        }


@dataclass(frozen=True)
class LocationJob:
    """The typed spec of one job: a points file, or `bbox` + `spacing` for a grid of cell centres."""

    output: Path
    checkpoint: str | None = None  # a SatCLIP .ckpt
    preset: str | None = None  # satclip-l10 / satclip-l40 with random weights (tests, benchmarks)
    points: str | None = None  # CSV (lon/lat columns) or any OGR point file
    bbox: tuple[float, float, float, float] | None = None  # grid mode, W,S,E,N degrees
    spacing: float | None = None  # grid mode, degrees
    lon_column: str | None = None
    lat_column: str | None = None
    layer: str | None = None
    id_field: str | None = None
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    overwrite: bool = False

    @property
    def model_spec(self) -> str | None:
        return self.checkpoint or self.preset

    @property
    def source(self) -> str:
        """Where the points came from, as the file's metadata says it."""
        if self.points:
            from clay_core.provenance import public_source

            return public_source(str(self.points))  # absolute, as embed writes its sources
        bbox = ",".join(f"{value:g}" for value in self.bbox or ())
        return f"grid bbox={bbox} spacing={self.spacing:g}" if self.spacing is not None else f"grid bbox={bbox}"

    def check(self) -> None:
        """Input problems that need neither the points nor the model."""
        if not self.model_spec:
            raise ClayInputError(
                "no model: pass --checkpoint satclip-*.ckpt (or --model satclip-l10 for random weights)"
            )
        if self.batch_size < 1:
            raise ClayInputError("--batch-size must be at least 1")
        if self.points and (self.bbox is not None or self.spacing is not None):
            raise ClayInputError("give either POINTS or --bbox with --spacing (a grid), not both")
        if not self.points and (self.bbox is None or self.spacing is None):
            raise ClayInputError("no points: give a POINTS file, or --bbox W,S,E,N and --spacing DEG for a grid")

    def load_points(self) -> PointSet:
        """The points in lon/lat degrees (checked: projected metres or swapped axes are refused)."""
        from clay_core.locations import grid_points, read_points
        from clay_core.models.satclip import check_lonlat

        if self.points:
            points = read_points(
                self.points,
                lon_column=self.lon_column,
                lat_column=self.lat_column,
                layer=self.layer,
                id_field=self.id_field,
            )
        else:
            assert self.bbox is not None and self.spacing is not None  # check() said so
            points = grid_points(self.bbox, self.spacing)
        check_lonlat(points.lonlat)
        return points

    def run(self, reporter: Reporter | None = None) -> LocationSummary:
        """Check, make sure the output can be written (before any point is read), embed batch by batch, write."""
        import numpy as np

        from clay_core import locations  # looked up at call time: tests replace load_satclip
        from clay_core.parquet import check_writable

        reporter = reporter or NullReporter()
        self.check()
        output = Path(self.output).expanduser().absolute()
        check_writable(output, self.overwrite)
        points = self.load_points()
        model = locations.load_satclip(str(self.model_spec), device=self.device)
        if self.preset and not self.checkpoint:
            reporter.log(
                f"{self.preset} has random weights: use --checkpoint with a released SatCLIP .ckpt for real embeddings",
                level="warning",
            )
        total = len(points.lonlat)
        reporter.start(total, f"embedding {total} points with {model.name} on {model.plan.device}")
        started = time.perf_counter()
        parts = []
        for start in range(0, total, self.batch_size):
            chunk = points.lonlat[start : start + self.batch_size]
            parts.append(model.embed_float64(chunk).astype(np.float32))
            reporter.advance(len(chunk))
        seconds = time.perf_counter() - started
        embeddings = np.concatenate(parts)
        metadata = model.metadata("location")
        metadata.update({"points": total, "source": self.source})
        path = locations.write_point_embeddings(output, points, embeddings, metadata, overwrite=self.overwrite)
        return LocationSummary(
            output=path,
            points=total,
            model=model.name,
            embedding_dim=int(embeddings.shape[1]),
            device=str(model.plan.device),
            seconds=seconds,
        )
