"""`clay embed SOURCE... -o OUT.gpq`: embed imagery (chip folders, Sentinel-2 scenes, any raster + AOI)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clay_core import validate
from clay_core.cli._common import (
    add_device_argument,
    add_precision_argument,
    emit_result,
    model_spec,
    parse_date,
)
from clay_core.progress import Reporter
from clay_core.provenance import public_source

if TYPE_CHECKING:
    from clay_core.embed import EmbedOptions
    from clay_core.embed_job import EmbedJob


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    which = model.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", metavar="CKPT", help="model weights (.ckpt, .pt, .safetensors)")
    which.add_argument(
        "--model",
        metavar="NAME",
        help="preset: clay-v0-demo (the shipped demo model) or an architecture with random weights, e.g. "
        "clay-v0-tiny (tests)",
    )
    model.add_argument("--level", help="embedding level: mean|patch|group (v0), cls|patch (v1.5)")
    add_device_argument(model)
    add_precision_argument(model)
    model.add_argument("--threads", type=int, help="torch CPU threads (default: all this process may use)")
    model.add_argument(
        "--satclip",
        metavar="CKPT_OR_PRESET",
        help="also write a `satclip` column: the SatCLIP location embedding (float64, 256) of each "
        "chip's centre, from this SatCLIP checkpoint (satclip-*.ckpt)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("run")
    run.add_argument("--chip-size", type=int, help="pixels per chip side (default: the model's image size)")
    run.add_argument("--stride", type=int, help="pixels between chip origins (default: chip size; less overlaps)")
    run.add_argument("--batch-size", type=int, default=8, help="chips per model call (default 8)")
    run.add_argument("--workers", type=int, default=2, help="reader processes (default 2; 0 reads inline)")
    run.add_argument(
        "--max-nodata",
        type=float,
        default=0.5,
        help="skip chips with a larger nodata share (default 0.5); the rest are filled",
    )
    run.add_argument(
        "--explode-patches", action="store_true", help="patch level: one row per patch with its own polygon"
    )
    run.add_argument("--no-sign-request", action="store_true", help="anonymous access to public S3 buckets")
    run.add_argument("--overwrite", action="store_true", help="replace an existing output")
    run.add_argument(
        "--dry-run", action="store_true", help="count chips and estimate time and output size (measures one tiny batch)"
    )
    run.add_argument(
        "--part-chips",
        type=int,
        default=64,
        help="chips per part file while running: at most this much work is lost when killed",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed imagery into a GeoParquet file",
        description="Embed chips of SOURCE(s) (a chip folder or s3:// prefix, Sentinel-2 band files or their "
        "folder, or any raster with --bbox) and write GeoParquet. Interrupted runs resume.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.gpq")
    add_model_arguments(parser)
    add_run_arguments(parser)
    area = parser.add_argument_group("area and bands")
    area.add_argument("--bbox", metavar="W,S,E,N", help="area of interest (rasters are reprojected to its UTM zone)")
    area.add_argument("--bbox-crs", help="CRS of --bbox (EPSG code or CRS string; default EPSG:4326)")
    area.add_argument("--date", help="acquisition date YYYY-MM-DD when the files do not tell it")
    area.add_argument(
        "--resolution",
        type=float,
        metavar="M",
        help="metres per pixel of the chips (rasters are resampled to it; default 10)",
    )
    area.add_argument(
        "--band-map",
        metavar="B04=1,...",
        help="Clay band -> band number or band description/file name, e.g. B04=1,B03=2,B02=3",
    )
    parser.set_defaults(func=run)


def embed_options(args: argparse.Namespace, metadata: dict[str, Any] | None = None) -> EmbedOptions:
    from clay_core.embed import EmbedOptions

    return EmbedOptions(
        level=args.level,
        batch_size=args.batch_size,
        workers=args.workers,
        max_nodata=args.max_nodata,
        explode_patches=args.explode_patches,
        overwrite=args.overwrite,
        part_chips=args.part_chips,
        metadata=metadata or {},
        satclip=model_spec(args.satclip),
    )


def check_satclip(args: argparse.Namespace, reporter: Reporter) -> None:
    """Load --satclip now, so a wrong file fails before the image model and the sources are opened."""
    from clay_core.embed_job import satclip_check

    satclip_check(model_spec(args.satclip), reporter)


def embed_job(args: argparse.Namespace) -> EmbedJob:
    from clay_core.embed_job import EmbedJob

    return EmbedJob(
        sources=tuple(args.sources),
        output=Path(args.output).expanduser().absolute(),
        checkpoint=args.checkpoint,
        preset=args.model,
        chip_size=args.chip_size,
        stride=args.stride,
        bbox=validate.bbox(args.bbox, "--bbox", args.bbox_crs) if args.bbox else None,
        bbox_crs=args.bbox_crs,
        date=parse_date(args.date, "--date") if args.date else None,
        band_map=validate.band_map(args.band_map),
        resolution_m=args.resolution,
        no_sign_request=args.no_sign_request,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        # The footer names the sources as the source_url column does: absolute, credentials removed.
        options=embed_options(args, {"sources": [public_source(source) for source in args.sources]}),
    )


def report_dry_run(estimate: dict[str, Any], output: Path | None, reporter: Reporter) -> int:
    seconds = estimate.get("estimated_seconds")
    size = estimate.get("estimated_bytes")
    guess = [f"{seconds:.0f} s" if seconds is not None else "time unknown"] + ([f"{size / 1e6:.1f} MB"] if size else [])
    result = {"dry_run": True, "output": str(output) if output is not None else None, **estimate}
    # The estimate is what a dry run is for: printed on stdout whatever --progress says (none only hides progress).
    line = f"{estimate['chips']} chips; estimated {' and '.join(guess)} ({estimate.get('note', '')})"
    emit_result(reporter, result, False, lambda _result: line)
    return 0


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core.embed import partial_failure_message

    job = embed_job(args)
    if args.dry_run:
        return report_dry_run(job.estimate(reporter), job.output, reporter)
    summary = job.run(reporter)
    reporter.log(summary.describe())
    reporter.log(f"wrote {summary.output}")
    reporter.result({"output": summary.output, "summary": summary.as_dict()})
    partial = partial_failure_message(summary)
    if partial:  # the good chips are written; the run still did not do everything asked
        reporter.error(partial, kind="input")
        return 2
    return 0
