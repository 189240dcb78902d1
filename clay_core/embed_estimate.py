"""The dry run of an embed job: chips, time and output size, from one tiny measured batch (nothing is written)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clay_core.embed import (
    EmbedOptions,
    check_chip_size,
    collect_records,
    run_model,
)
from clay_core.embed_parts import parts_dir_for
from clay_core.locations import load_satclip, satclip_vectors
from clay_core.parquet import chips_table

if TYPE_CHECKING:
    import pyarrow as pa

    from clay_core.embed_readers import WorkItem
    from clay_core.models.registry import EmbeddingModel
    from clay_core.sources.base import ChipData, ChipRecord, ChipSource


def estimate_job(
    sources: Sequence[ChipSource], model: EmbeddingModel, options: EmbedOptions | None = None, sample_chips: int = 2
) -> dict[str, Any]:
    """Chips, time and output size of a job, from one tiny measured batch (nothing is written)."""
    options = options or EmbedOptions()
    options.check()
    level = model.check_level(options.level)
    work = collect_records(sources)
    check_chip_size(model, work)
    result: dict[str, Any] = {
        "chips": len(work),
        "model": model.name,
        "level": level,
        "device": model.plan.device,
        "precision": model.plan.precision,
    }
    sample = _readable_sample(sources, work, sample_chips + 1)  # + the first read, which opens the files
    if not sample:
        result.update(estimated_seconds=None, estimated_bytes=None, note="no chip could be read for a measurement")
        return result
    source_index = sample[0][0]
    records = [chip.record for _, chip, _ in sample]
    pixels = torch.from_numpy(np.stack([chip.pixels for _, chip, _ in sample]).astype(np.float32))
    bands = sources[source_index].bands
    run_model(model, pixels[:1], bands, records[:1], level)  # warm-up: the first call pays one-off costs
    computing = time.perf_counter()
    vectors = run_model(model, pixels, bands, records, level)
    model_per_chip = (time.perf_counter() - computing) / len(records)
    # The first read opens the files (and decodes whole JPEG 2000 blocks into GDAL's cache, as the run's readers do
    # once per file): counted once, not for every chip (which made a 2 s run's estimate 15 s).
    read_times = [seconds for _, _, seconds in sample]
    read_per_chip = float(np.median(read_times[1:] if len(read_times) > 1 else read_times))
    opening = max(0.0, read_times[0] - read_per_chip)
    # Readers run in parallel with the model: the slower of the two sets the pace.
    per_chip = max(model_per_chip, read_per_chip / max(1, options.workers))
    locations = satclip_vectors(load_satclip(options.satclip), records) if options.satclip else None
    bytes_per_row, rows_per_chip = _bytes_per_row(records, vectors, options, locations)
    result.update(
        measured_chips=len(records),
        model_s_per_chip=model_per_chip,
        read_s_per_chip=read_per_chip,
        opening_s=opening,
        estimated_seconds=opening + per_chip * len(work),
        rows=len(work) * rows_per_chip,
        estimated_bytes=int(bytes_per_row * rows_per_chip * len(work)),
        note="upper bounds: chips skipped for nodata are not known before reading",
    )
    return result


def _readable_sample(
    sources: Sequence[ChipSource], work: Sequence[WorkItem], n: int, max_tries: int = 16
) -> list[tuple[int, ChipData, float]]:
    """Up to n readable chips of the first source that has any, with their read times."""
    from clay_core.sources.base import ChipReadError

    sample: list[tuple[int, ChipData, float]] = []
    for source_index, record in work[:max_tries]:
        if sample and source_index != sample[0][0]:
            break
        started = time.perf_counter()
        try:
            chip = sources[source_index].read(record)
        except ChipReadError:
            continue
        sample.append((source_index, chip, time.perf_counter() - started))
        if len(sample) == n:
            break
    return sample


def _bytes_per_row(
    records: Sequence[ChipRecord], vectors: np.ndarray, options: EmbedOptions, satclip: np.ndarray | None = None
) -> tuple[float, int]:
    """Compressed bytes per output row, measured by writing the sample to memory (minus the fixed footer)."""
    import pyarrow.parquet as pq

    def size(table: pa.Table) -> int:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.tell()

    table = chips_table(records, vectors, explode_patches=options.explode_patches, satclip=satclip)
    rows_per_chip = table.num_rows // len(records)
    # The marginal cost of rows after the first: per-column headers and statistics do not grow with rows.
    first = table.slice(0, 1) if table.num_rows > 1 else table.schema.empty_table()
    return max(1.0, (size(table) - size(first)) / (table.num_rows - first.num_rows)), rows_per_chip


def output_exists_message(output: Path) -> str | None:
    """Why `output` cannot be written now (for the CLI's dry run), or None."""
    if output.exists():
        return f"{output} already exists (pass --overwrite to replace it)"
    if parts_dir_for(output).exists():
        return f"{parts_dir_for(output)} holds an interrupted run: the next run resumes it"
    return None
