"""The `clay` command. Thin by design: each subcommand lives in its own module in this package
(rasterio-style) and only parses arguments and calls library functions.

A command module defines `register(subparsers)` which adds its parser and sets `func=run`,
where `run(args, reporter) -> int`. Modules are discovered, so adding a command touches no list.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import pkgutil
import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import NoReturn

import clay_core
from clay_core.cli._common import check_arguments
from clay_core.errors import ClayInputError
from clay_core.progress import make_reporter
from clay_core.provenance import redact

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
# What a shell reports for a process stopped by SIGPIPE (128 + 13): the reader of stdout went away.
EXIT_BROKEN_PIPE = 141


class ClayArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: the problem and where the help is, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes the value it rejects, which may be a source URL with its credentials
        sys.stderr.write(f"{self.prog}: error: {redact(message)} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = ClayArgumentParser(prog="clay", description="Clay foundation-model embeddings.")
    parser.add_argument("--version", action="version", version=f"clay {clay_core.__version__}")
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="progress for people (bar, on stderr) or for programs (json lines on stdout)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of internal errors (also: CLAY_DEBUG=1)"
    )
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
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(join_negative_values(arguments, parser))
    except SystemExit as exit_:  # --help, --version, or a one-line usage error (already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    reporter = make_reporter(args.progress)
    redact_log_records()
    try:
        try:
            check_arguments(args)
            code = int(args.func(args, reporter) or EXIT_OK)
            sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
            return code
        finally:
            reporter.close()
    except BrokenPipeError:
        return _reader_gone()
    except ClayInputError as exc:
        reporter.error(str(exc), kind="input")
        return EXIT_BAD_INPUT
    except OSError as exc:
        if exc.errno not in USER_FIXABLE_ERRNOS:
            return _internal(exc, args, reporter)
        reporter.error(describe_os_error(exc), kind="input")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        reporter.error("interrupted", kind="internal")
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into exit code 1
        return _internal(exc, args, reporter)


def _reader_gone() -> int:
    """The program reading stdout stopped early (`clay info --json | head -1`): not an error to report. Later
    writes and the interpreter's last flush go to /dev/null, so no "Exception ignored" appears either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass
    return EXIT_BROKEN_PIPE


class RedactingFormatter(logging.Formatter):
    """Log lines of the libraries (rasterio's GDAL messages, retries) quote URLs: printed without credentials."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def redact_log_records() -> None:
    """What Python logging prints to stderr when nothing configured it (its last-resort handler) is redacted."""
    if logging.lastResort is not None and not isinstance(logging.lastResort.formatter, RedactingFormatter):
        logging.lastResort.setFormatter(RedactingFormatter())


def _internal(exc: BaseException, args: argparse.Namespace, reporter) -> int:
    if args.debug or os.environ.get("CLAY_DEBUG"):
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    reporter.error(f"{type(exc).__name__}: {exc} (re-run with --debug for the traceback)", kind="internal")
    return EXIT_INTERNAL


# Failures of the machine the user can fix (space, permissions, a path that is not what it should be): one
# line and exit 2, not a crash. Other OSErrors stay internal errors.
USER_FIXABLE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.ENOENT,
    errno.EEXIST,
}


def describe_os_error(exc: OSError) -> str:
    fixes: dict[int | None, str] = {  # an OSError raised by hand may have no errno
        errno.ENOSPC: "the disk is full: free some space (or choose another output folder) and run again",
        errno.EDQUOT: "the disk quota is used up: free some space and run again",
        errno.EROFS: "the file system is read-only: choose an output folder you can write to",
        errno.EACCES: "permission denied: choose a file or folder you can write to",
        errno.EPERM: "operation not permitted: choose a file or folder you can write to",
    }
    fix = fixes.get(exc.errno, exc.strerror or str(exc))
    return f"{fix} ({exc.filename})" if exc.filename else fix


# A value that starts with "-" and a digit (a negative coordinate, "-21.3,64.1") would otherwise be taken
# for an option by argparse ("expected one argument"); given right after an option that takes a value it is
# that option's value, so it is joined as --option=VALUE.
_NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d)")


def _value_options(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _value_options(sub)
        elif action.option_strings and action.nargs != 0:
            yield from action.option_strings


def join_negative_values(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    takes_value = set(_value_options(parser))
    joined: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            joined.append(token)
            joined.extend(tokens)
            break
        if token in takes_value:
            value = next(tokens, None)
            if value is not None and _NEGATIVE_VALUE.match(value):
                joined.append(f"{token}={value}")
                continue
            joined.append(token)
            if value is not None:
                joined.append(value)
            continue
        joined.append(token)
    return joined
