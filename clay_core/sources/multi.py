"""Several sources read as one (e.g. all scenes of a tile found by STAC, or several chip folders)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from clay_core.errors import ClayInputError
from clay_core.sources.base import ChipData, ChipRecord, ChipSource, nodata_fraction


@dataclass
class MultiSource:
    """Records of all parts, in order; bands: those every part provides (a part's extra bands are dropped)."""

    parts: Sequence[ChipSource]
    bands: tuple[str, ...] = field(init=False, default=())
    _owner: dict[str, int] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.parts:
            raise ClayInputError("nothing to read: no sources")
        common = set(self.parts[0].bands)
        for part in self.parts[1:]:
            common &= set(part.bands)
        self.bands = tuple(b for b in self.parts[0].bands if b in common)
        if not self.bands:
            raise ClayInputError("the sources share no band: read them separately")

    def records(self) -> list[ChipRecord]:
        records, self._owner = self._collect()
        return records

    def _collect(self) -> tuple[list[ChipRecord], dict[str, int]]:
        """All parts' records, and for each chip id the index of the part that reads it."""
        owner: dict[str, int] = {}
        records: list[ChipRecord] = []
        for index, part in enumerate(self.parts):
            for record in part.records():
                if record.chip_id in owner:  # the same chip twice (e.g. two copies of a scene): keep the first
                    continue
                owner[record.chip_id] = index
                records.append(record)
        return records, owner

    def read(self, record: ChipRecord) -> ChipData:
        if self._owner is None:
            self._owner = self._collect()[1]
        part = self.parts[self._owner[record.chip_id]]
        data = part.read(record)
        if part.bands != self.bands:
            keep = [part.bands.index(b) for b in self.bands]
            data.pixels = data.pixels[keep]
            data.nodata_fraction = nodata_fraction(data.pixels)
        return data
