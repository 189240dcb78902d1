"""`clay info`: versions, device, precision, threads, GDAL/PROJ, model cache."""

from __future__ import annotations

import argparse

from clay_core.cli._common import add_device_argument, add_precision_argument, emit_result
from clay_core.progress import Reporter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="report versions, device and precision")
    add_device_argument(parser)
    add_precision_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core.info import collect_info, format_info

    info = collect_info(args.device, args.precision)
    emit_result(reporter, info, args.json, format_info)
    return 0
