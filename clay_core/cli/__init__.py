"""The `clay` command. Thin by design: each subcommand lives in its own module in this package
(rasterio-style) and only parses arguments and calls library functions.

A command module defines `register(subparsers)` which adds its parser and sets `func=run`,
where `run(args, reporter) -> int`. Modules are discovered, so adding a command touches no list.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

import clay_core
from clay_core.errors import ClayInputError
from clay_core.progress import make_reporter

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clay", description="Clay foundation-model embeddings.")
    parser.add_argument("--version", action="version", version=f"clay {clay_core.__version__}")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                        help="progress for people (bar, on stderr) or for programs (json lines on stdout)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of internal errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before torch (and its OpenMP runtime) loads: idle OpenMP threads sleep instead of spinning. On a small
    # shared CPU the spinning starved the chip readers and made the tiny model ~10x slower (measured).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    reporter = make_reporter(args.progress)
    try:
        return int(args.func(args, reporter) or EXIT_OK)
    except ClayInputError as exc:
        reporter.error(str(exc), kind="input")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        reporter.error("interrupted", kind="internal")
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into exit code 1
        if args.debug or os.environ.get("CLAY_DEBUG"):
            traceback.print_exc()
        reporter.error(f"{type(exc).__name__}: {exc} (re-run with --debug for the traceback)", kind="internal")
        return EXIT_INTERNAL
    finally:
        reporter.close()
