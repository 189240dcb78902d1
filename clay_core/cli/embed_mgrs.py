"""`clay embed-mgrs TILE... --source ... --start DATE --end DATE -o DIR`: one GeoParquet file per MGRS tile,
named like Clay's ({MGRS}_{MINDATE}_{MAXDATE}_v{VERSION}.gpq), optionally fanned out on Dask.

Exit code: 0 when every tile was embedded; otherwise the tiles that worked are kept, the result lists
`failed_tiles`, and the code is 2 when all failures were input problems, 1 when a tile crashed."""

from __future__ import annotations

import argparse
from pathlib import Path

from clay_core.cli._common import model_spec, parse_date
from clay_core.cli.embed import add_model_arguments, add_run_arguments, check_satclip, embed_options
from clay_core.errors import ClayInputError
from clay_core.progress import Reporter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed-mgrs",
        help="embed MGRS tiles, one GeoParquet file per tile",
        description="Embed MGRS tiles from a chip folder / s3:// prefix ('{mgrs}' in it is replaced by the tile), "
        "Sentinel-2 band files, or a STAC API (stac+https://...). Interrupted tiles resume.",
    )
    parser.add_argument("tiles", nargs="+", metavar="TILE", help="MGRS tile ids, e.g. 27WXN")
    parser.add_argument("--source", required=True, metavar="DIR|s3://...|stac+https://...")
    parser.add_argument("--start", required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--end", required=True, metavar="YYYY-MM-DD")
    parser.add_argument("-o", "--output-dir", required=True, metavar="DIR")
    parser.add_argument("--output-version", type=int, default=1, help="the v{VERSION} in the file names (default 1)")
    add_model_arguments(parser)
    add_run_arguments(parser)
    fan_out = parser.add_mutually_exclusive_group()
    fan_out.add_argument("--dask-scheduler", metavar="ADDRESS", help="run one task per tile on this Dask cluster")
    fan_out.add_argument(
        "--dask-workers", type=int, metavar="N", help="run tiles on a local Dask cluster of N processes"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core.embed_tiles import TileJob, embed_tiles, exit_code

    if not args.checkpoint and not args.model:
        raise ClayInputError("give --checkpoint CKPT or --model NAME")
    if args.dry_run:
        raise ClayInputError("--dry-run is per source: use `clay embed SOURCE --dry-run` on one tile's source")
    if args.dask_workers is not None and args.dask_workers < 1:
        raise ClayInputError(f"--dask-workers must be >= 1, got {args.dask_workers}")
    options = embed_options(args)
    options.check()
    check_satclip(args, reporter)
    job = TileJob(
        source=args.source,
        start=parse_date(args.start, "--start"),
        end=parse_date(args.end, "--end"),
        out_dir=str(Path(args.output_dir).expanduser().absolute()),
        checkpoint=model_spec(args.checkpoint),
        preset=args.model,
        chip_size=args.chip_size,
        stride=args.stride,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        version=args.output_version,
        no_sign_request=args.no_sign_request,
        options=options,
    )
    results = embed_tiles(args.tiles, job, scheduler=args.dask_scheduler, workers=args.dask_workers, reporter=reporter)
    failed = [r for r in results if "error" in r]
    outputs = [r["output"] for r in results if "output" in r]
    partial = [r for r in results if "partial" in r]
    reporter.result(
        {
            "outputs": outputs,
            "tiles": results,
            "failed_tiles": [r["tile"] for r in failed],
            "partial_tiles": [r["tile"] for r in partial],
        }
    )
    code = exit_code(results)
    if failed or partial:  # one line that says what was not done (each tile was logged as it finished)
        reporter.error(
            f"{len(failed)} of {len(results)} tile(s) failed"
            + (f", {len(partial)} written without some chips" if partial else "")
            + ": "
            + "; ".join(
                [f"{r['tile']}: {r['error']}" for r in failed] + [f"{r['tile']}: {r['partial']}" for r in partial]
            ),
            kind="input" if code == 2 else "internal",
        )
    return code
