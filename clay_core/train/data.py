"""Training data: chips from sources in a deterministic, resumable, rank-sharded order, with crops and flips.

Determinism, which `--resume` relies on: the data order is a pure function of (seed, epoch) and each
sample's crop/flip of (seed, epoch, index). Nothing here touches the global RNG.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clay_core.errors import ClayInputError
from clay_core.sources.base import ChipRecord, ChipSource


def sample_seed(*parts: int) -> int:
    """A 63-bit seed from integers (order-sensitive, well mixed)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state.view(np.uint64)[0] >> np.uint64(1))


class TrainingOrder(torch.utils.data.Sampler[tuple[int, int]]):
    """An endless stream of (epoch, item index) keys, sharded over ranks like DistributedSampler.

    Each epoch is a permutation drawn from (seed, epoch), padded by wrapping so every rank gets the
    same count; rank r takes positions r, r + world, ... Starting at `start` (samples this rank has
    already consumed) continues the stream exactly where a previous run stopped."""

    def __init__(self, items: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if items <= 0:
            raise ClayInputError("the training sources hold no chips")
        self.items, self.seed, self.rank, self.world_size, self.start = items, seed, rank, world_size, start
        self.per_rank = math.ceil(items / world_size)

    def epoch_of(self, consumed: int) -> int:
        return consumed // self.per_rank

    def _shard(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch))
        order: list[int] = torch.randperm(self.items, generator=generator).tolist()
        padded = (order * math.ceil(self.per_rank * self.world_size / self.items))[: self.per_rank * self.world_size]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        epoch, shard = -1, []
        while True:
            current, offset = divmod(position, self.per_rank)
            if current != epoch:
                epoch, shard = current, self._shard(current)
            yield (epoch, shard[offset])
            position += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number for its own bookkeeping
        return 2**62


class ChipTrainingSet(torch.utils.data.Dataset[dict[str, Any]]):
    """Chips of several sources, mapped onto the model's band order (absent bands -> NaN, filled later)."""

    def __init__(
        self,
        sources: Sequence[ChipSource],
        model_bands: Sequence[str],
        image_size: int,
        seed: int,
        augment: bool = True,
        cache_mb: int = 0,
    ) -> None:
        self.sources = list(sources)
        self.model_bands = tuple(model_bands)
        self.image_size, self.seed, self.augment = image_size, seed, augment
        self.items = [(index, record) for index, source in enumerate(self.sources) for record in source.records()]
        self._cache_budget = cache_mb * 1024 * 1024
        self._cache: dict[int, np.ndarray] = {}
        self._cache_bytes = 0
        small = [record for _, record in self.items if record.size < image_size]
        if small:
            raise ClayInputError(
                f"{len(small)} chip(s) are smaller ({small[0].size} px) than the model's {image_size} px "
                f"input; use chips of at least {image_size} px (e.g. --chip-size {image_size}) or a smaller "
                "--image-size"
            )

    def __len__(self) -> int:
        return len(self.items)

    def _pixels(self, index: int) -> np.ndarray:
        """[13, S, S] float32 raw values in model band order; cached in RAM while the budget lasts."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        source_index, record = self.items[index]
        source = self.sources[source_index]
        chip = source.read(record)
        position = {name: i for i, name in enumerate(source.bands)}
        pixels = np.full((len(self.model_bands), *chip.pixels.shape[-2:]), np.nan, dtype=np.float32)
        for out_index, name in enumerate(self.model_bands):
            if name in position:
                pixels[out_index] = chip.pixels[position[name]]
        if self._cache_bytes + pixels.nbytes <= self._cache_budget:
            self._cache[index] = pixels
            self._cache_bytes += pixels.nbytes
        return pixels

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        _, record = self.items[index]
        pixels = self._pixels(index)
        size = self.image_size
        height, width = pixels.shape[-2:]
        rng = np.random.default_rng(sample_seed(self.seed, epoch, index, 7))
        if self.augment:
            top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        else:
            top, left = (height - size) // 2, (width - size) // 2
        crop = pixels[:, top : top + size, left : left + size]
        if self.augment and rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        if self.augment and rng.random() < 0.5:
            crop = crop[:, ::-1, :]
        return {
            "pixels": np.ascontiguousarray(crop),
            "lonlat": np.asarray(crop_center_lonlat(record, top, left, size), dtype=np.float64),
            "date": record.date.toordinal(),
            "index": index,
        }


def crop_center_lonlat(record: ChipRecord, top: int, left: int, size: int) -> tuple[float, float]:
    """The centre of a crop in lon/lat (flips do not move it): what the model's latlon token sees."""
    from clay_core.grid.utm import utm_to_lonlat

    xmin, _, _, ymax = record.utm_bounds
    x = xmin + (left + size / 2.0) * record.resolution_m
    y = ymax - (top + size / 2.0) * record.resolution_m
    lon, lat = utm_to_lonlat(record.epsg, x, y)
    return float(lon), float(lat)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A micro-batch: pixels as one tensor, lon/lat and dates as the model's `prepare` takes them."""
    return {
        "pixels": torch.from_numpy(np.stack([s["pixels"] for s in samples])),
        "lonlat": np.stack([s["lonlat"] for s in samples]),
        "dates": [datetime.date.fromordinal(int(s["date"])) for s in samples],
    }


def open_sources(specs: Sequence[str | Path | ChipSource], options: Mapping[str, Any]) -> list[ChipSource]:
    """Open each spec with `open_source`; ChipSource objects (library callers, tests) pass through.

    With a `bbox` the file specs are one raster source (e.g. one file per band) cut to that area."""
    from clay_core.sources import open_source

    files = [str(spec) for spec in specs if isinstance(spec, str | Path)]
    given = [spec for spec in specs if not isinstance(spec, str | Path)]
    if files and options.get("bbox") is not None:
        return [open_source(files, **dict(options)), *given]
    return [open_source(str(spec), **dict(options)) if isinstance(spec, str | Path) else spec for spec in specs]
