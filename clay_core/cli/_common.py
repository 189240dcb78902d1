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
from typing import Any, TypedDict

from clay_core import validate
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
    parser.add_argument(
        "--device",
        type=device_name,
        default="auto",
        metavar="{" + ",".join(DEVICES) + ",cuda:N}",
        help="where the model runs (default auto: a GPU when there is one)",
    )


def add_precision_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto|fp32|bf16|fp16 (default auto: bf16 on GPUs that have it, else fp32)",
    )


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


def emit_result(
    reporter: Reporter, result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]
) -> None:
    """A command's final result: the JSON event for the plugin worker, pretty JSON with --json, else `text(result)`."""
    if isinstance(reporter, JsonLinesReporter):
        reporter.result(result)
    elif as_json:
        print(json.dumps(result, indent=2))
    else:
        print(text(result))


# ---- checking every command's arguments before it runs ------------------------------------------------
# One table for all commands (argparse `dest` -> option and bounds): an option means the same everywhere, so
# `--threads 0` or `--batch-size 0` is refused alike by `embed`, `train`, `similar`... before any work.
class IntegerBounds(TypedDict, total=False):
    minimum: int
    maximum: int


class RealBounds(TypedDict, total=False):
    minimum: float
    maximum: float
    above: float


_INTEGERS: dict[str, tuple[str, IntegerBounds]] = {
    "chip_size": ("--chip-size", {"minimum": 1}),
    "stride": ("--stride", {"minimum": 1}),
    "batch_size": ("--batch-size", {"minimum": 1}),
    "workers": ("--workers", {"minimum": 0, "maximum": 256}),
    "threads": ("--threads", {"minimum": 1, "maximum": 4096}),
    "part_chips": ("--part-chips", {"minimum": 1}),
    "top": ("--top", {"minimum": 0}),
    "dask_workers": ("--dask-workers", {"minimum": 1}),
    "output_version": ("--output-version", {"minimum": 0}),
    "steps": ("--steps", {"minimum": 1}),
    "accumulate": ("--accumulate", {"minimum": 1}),
    "checkpoint_every": ("--checkpoint-every", {"minimum": 1}),
    "cache_mb": ("--cache-mb", {"minimum": 0}),
    "restart_period": ("--restart-period", {"minimum": 1}),
    "restart_mult": ("--restart-mult", {"minimum": 1}),
    "chips": ("--chips", {"minimum": 1}),
    "clusters": ("-k/--clusters", {"minimum": 1}),
    "max_iterations": ("--max-iterations", {"minimum": 1}),
}
_REALS: dict[str, tuple[str, RealBounds]] = {
    "max_nodata": ("--max-nodata", {"minimum": 0.0, "maximum": 1.0}),
    "threshold": ("--threshold", {"minimum": -1.0, "maximum": 1.0}),
    "spacing": ("--spacing", {"above": 0.0}),
    "lr": ("--lr", {"above": 0.0}),
    "weight_decay": ("--weight-decay", {"minimum": 0.0}),
    "mask_ratio": ("--mask-ratio", {"above": 0.0, "maximum": 0.99}),
    "visible_loss_weight": ("--visible-loss-weight", {"minimum": 0.0}),
    "l2": ("--l2", {"above": 0.0}),
}
# Where an option means something else in one command: (command, dest) -> bounds.
_REALS_PER_COMMAND: dict[tuple[str, str], tuple[str, RealBounds]] = {
    ("classify", "threshold"): ("--threshold", {"minimum": 0.0, "maximum": 1.0}),  # a probability
}


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad values of any command with one line (ClayInputError) before the command starts."""
    for dest, (option, integer_bounds) in _INTEGERS.items():
        if getattr(args, dest, None) is not None:
            validate.integer(getattr(args, dest), option, **integer_bounds)
    for dest, (option, real_bounds) in _REALS.items():
        if getattr(args, dest, None) is not None:
            option, real_bounds = _REALS_PER_COMMAND.get((args.command, dest), (option, real_bounds))
            validate.real(getattr(args, dest), option, **real_bounds)
    _check_places_and_dates(args)
    _check_files(args)


def _check_places_and_dates(args: argparse.Namespace) -> None:
    if getattr(args, "bbox_crs", None) is not None:
        validate.crs_text(args.bbox_crs)
    if getattr(args, "bbox", None) is not None:
        validate.bbox(args.bbox, "--bbox", getattr(args, "bbox_crs", None))
    for dest, option in (
        ("point", "--point"),
        ("negative_point", "--negative-point"),
        ("positive_point", "--positive-point"),
    ):
        for text in getattr(args, dest, None) or ():
            validate.point(text, option)
    if getattr(args, "date", None) is not None:
        validate.date(args.date, "--date")
    if getattr(args, "start", None) is not None and getattr(args, "end", None) is not None:
        validate.date_range(args.start, args.end)
    if getattr(args, "band_map", None) is not None:
        validate.band_map(args.band_map)
    if args.command == "embed-mgrs":
        for tile in args.tiles:
            validate.tile_id(tile)


def _check_files(args: argparse.Namespace) -> None:
    command = args.command
    if getattr(args, "checkpoint", None):
        validate.checkpoint_file(args.checkpoint)
    if getattr(args, "init_checkpoint", None):
        validate.checkpoint_file(args.init_checkpoint, "--init")
    satclip = getattr(args, "satclip", None)
    if satclip and (Path(satclip).suffix or "/" in satclip or "\\" in satclip):
        validate.checkpoint_file(satclip, "--satclip")
    if command in ("embed", "train"):
        validate.input_paths(args.sources)
    if command == "embed-locations" and args.points:
        validate.input_paths([args.points], "points file")
    embeddings = getattr(args, "embeddings", None)
    if embeddings is not None:  # files, folders or glob patterns (the patterns are expanded by the command)
        listed = [str(e) for e in (embeddings if isinstance(embeddings, list) else [embeddings])]
        validate.input_paths([e for e in listed if not any(c in e for c in "*?[")] or ["."], "embeddings file")
    for dest in ("before", "after", "labels"):
        if getattr(args, dest, None) is not None:
            validate.input_paths([args.__dict__[dest]], f"{dest} file")
    if command in ("embed", "embed-locations", "similar", "classify", "cluster", "change") and not getattr(
        args, "dry_run", False
    ):
        validate.output_file(args.output, args.overwrite)
    if command in ("similar", "classify", "cluster", "change"):
        validate.output_not_input(args.output, _input_files(args))
    elif command == "embed" and args.dry_run:
        validate.output_file(args.output, True)
    elif command == "embed-mgrs":
        validate.output_folder(args.output_dir)
    # `clay train` makes its output folder itself and has its own --resume/--overwrite rules.


def _input_files(args: argparse.Namespace) -> list[Path]:
    """Every file a search command reads: its embeddings (folders and patterns expanded) and other inputs."""
    from clay_core.collection import expand_inputs

    embeddings = getattr(args, "embeddings", None)
    listed = embeddings if isinstance(embeddings, list) else [embeddings] if embeddings is not None else []
    files = expand_inputs(listed) if listed else []
    return files + [Path(args.__dict__[dest]) for dest in ("before", "after", "labels") if getattr(args, dest, None)]


def match_name(match: dict[str, Any]) -> str:
    """A listed match for people: its chip id, and which patch when the file has one row per patch."""
    patch = match.get("patch")
    return f"{match['chip_id']} patch {patch[0]},{patch[1]}" if patch else str(match["chip_id"])
