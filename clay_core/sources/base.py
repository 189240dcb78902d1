"""What every chip source hands the pipeline: records (cheap, geometry only) and chip data (one window).

A chip is identified by a `ChipRecord`: where it comes from, its date and its exact footprint on a UTM grid.
`ChipSource.records()` lists them without touching pixels; `ChipSource.read(record)` reads one window and
returns raw pixel values (DN, dB, metres) as float32 with NaN where there is no data.
Sources are picklable: they hold paths and options only and (re)open files lazily in each process.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from clay_core.errors import ClayInputError
from clay_core.grid.utm import utm_to_lonlat


class ChipReadError(ClayInputError):
    """One chip cannot be read (corrupt file, wrong band count, no CRS, date out of range ...).

    The pipeline skips that chip, reports it and goes on with the rest.
    """


@dataclass(frozen=True)
class ChipRecord:
    chip_id: str  # deterministic and unique within a source
    source_url: str  # file (or scene) the chip is read from
    date: datetime.date
    epsg: int
    utm_bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in EPSG:epsg, grid aligned
    row: int
    col: int
    mgrs: str | None
    size: int  # pixels per side
    resolution_m: float

    @property
    def located(self) -> bool:
        """False for a chip whose file could not even be opened: its read() raises ChipReadError."""
        return self.epsg > 0

    @property
    def center_utm(self) -> tuple[float, float]:
        xmin, ymin, xmax, ymax = self.utm_bounds
        return ((xmin + xmax) / 2.0, (ymin + ymax) / 2.0)

    @property
    def center_lonlat(self) -> tuple[float, float]:
        """Chip centre as (lon, lat) degrees: the UTM bounds' centre reprojected (as Clay v0 did)."""
        if not self.located:
            return (float("nan"), float("nan"))
        lon, lat = utm_to_lonlat(self.epsg, *self.center_utm)
        return (float(lon), float(lat))


@dataclass
class ChipData:
    record: ChipRecord
    pixels: np.ndarray  # float32 [C, H, W] raw units, NaN = nodata, band order = source.bands
    nodata_fraction: float  # share of pixels where any band is nodata (0..1)


@runtime_checkable
class ChipSource(Protocol):
    @property
    def bands(self) -> tuple[str, ...]:
        """Canonical band names (clay_core.sensors), in pixel order (read-only: a field or a property)."""
        ...

    def records(self) -> list[ChipRecord]:
        """All chips of the source, cheaply (no pixel reads), in a deterministic order."""
        ...

    def read(self, record: ChipRecord) -> ChipData:
        """Read one chip; raises ChipReadError with a clear message when that chip is bad."""
        ...


def nodata_fraction(pixels: np.ndarray) -> float:
    """Share of pixel positions where at least one band is NaN."""
    if pixels.size == 0:
        return 1.0
    return float(np.isnan(pixels).any(axis=0).mean())
