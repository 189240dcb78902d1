"""Options of the search commands (`clay similar`, `clay classify`, `clay cluster`), declared once: the embeddings
to search, and the example chips and points. The rows they name are found by clay_core.example_rows."""

from __future__ import annotations

import argparse

SHOWN_MATCHES = 10  # best rows printed for people (the output file holds them all)


def add_inputs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "embeddings",
        nargs="+",
        metavar="EMB.gpq",
        help="embeddings GeoParquet file(s), folders of them or glob patterns: one search over all",
    )


def add_example_arguments(
    parser: argparse.ArgumentParser,
    chip: str = "--chip",
    point: str = "--point",
    negative_chip: str = "--negative-chip",
    negative_point: str = "--negative-point",
) -> None:
    """Positive and negative examples, each a chip id or a LON,LAT point, repeatable. The flags are the
    command's own words (`clay classify` says --positive/--negative); each flag's value lands in its dest."""
    for flag, role in ((chip, "positive"), (negative_chip, "negative")):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            metavar="ID",
            help=f"{role} example chip id (FILE:ID when the id is in several files)",
        )
    for flag, role in ((point, "positive"), (negative_point, "negative")):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            metavar="LON,LAT",
            help=f"{role} example: the chip containing this point (degrees)",
        )
