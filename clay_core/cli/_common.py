"""Arguments and parsers shared by the `clay` subcommands, so every command spells and checks them alike.

Light on purpose: argument parsing must not import torch, pyarrow or the models (every `clay` call and
every plugin worker start pays for what this package imports; heavy modules are imported inside `run`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clay_core.device_options import DEVICES, PRECISIONS
from clay_core.errors import ClayInputError
from clay_core.parsing import parse_bbox, parse_date  # noqa: F401 - re-exported for the CLI modules
from clay_core.progress import JsonLinesReporter, Reporter

_CUDA_INDEX = re.compile(r"cuda:\d+")


def device_name(text: str) -> str:
    """argparse type: auto|cpu|cuda|cuda:N|mps (case-insensitive)."""
    value = text.strip().lower()
    if value in DEVICES or _CUDA_INDEX.fullmatch(value):
        return value
    raise argparse.ArgumentTypeError(f"device {text!r}: use one of {', '.join(DEVICES)} or cuda:N")


def add_device_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--device", type=device_name, default="auto", metavar="{" + ",".join(DEVICES) + ",cuda:N}",
                        help="where the model runs (default auto: a GPU when there is one)")


def add_precision_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto|fp32|bf16|fp16 (default auto: bf16 on GPUs that have it, else fp32)")


def date_type(text: str) -> datetime.date:
    """argparse type for a YYYY-MM-DD option (argparse names the option in its message)."""
    try:
        return parse_date(text)
    except ClayInputError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def bbox_type(text: str) -> tuple[float, float, float, float]:
    """argparse type for a W,S,E,N option."""
    try:
        return parse_bbox(text)
    except ClayInputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def model_spec(value: str | None) -> str | None:
    """A checkpoint that exists as an absolute path (tasks may run in other processes, other folders),
    anything else unchanged (a preset name stays a name)."""
    if not value:
        return None
    path = Path(value).expanduser()
    return str(path.absolute()) if path.is_file() else value


def emit_result(reporter: Reporter, result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    """A command's final result: the JSON event for the plugin worker, pretty JSON with --json, else `text(result)`."""
    if isinstance(reporter, JsonLinesReporter):
        reporter.result(result)
    elif as_json:
        print(json.dumps(result, indent=2))
    else:
        print(text(result))
