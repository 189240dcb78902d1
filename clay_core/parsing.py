"""Parsing of user-typed values shared by the CLI, the sources and the QGIS algorithms (stdlib only, so the
plugin can use it in QGIS's own Python): one wording of each error everywhere."""

from __future__ import annotations

import datetime
from collections.abc import Collection

from clay_core.errors import ClayInputError


def parse_date(text: str | datetime.date, option: str = "date") -> datetime.date:
    """YYYY-MM-DD (or a date) -> date, or a ClayInputError naming the option."""
    if isinstance(text, datetime.date):
        return text
    try:
        return datetime.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ClayInputError(f"{option} {text!r} is not a date: use YYYY-MM-DD, e.g. 2017-02-16") from None


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """ "W,S,E,N" (spaces allowed) -> four floats, or a ClayInputError."""
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ClayInputError(f"bbox {text!r} must be four numbers W,S,E,N (xmin,ymin,xmax,ymax)")
    return values


def comma_list(text: str | None) -> list[str]:
    """ "a, b,,c" -> ["a", "b", "c"]: a comma-separated list as typed (chip ids, label values), blanks dropped."""
    return [part.strip() for part in str(text or "").split(",") if part.strip()]


def split_chip_ref(chip_id: str, file_names: Collection[str]) -> tuple[str | None, str]:
    """ "FILE:ID" -> (FILE, ID) when FILE is one of the files searched, else (None, the id as given): a chip id
    may itself hold ':', so only a known file name before the last ':' counts."""
    prefix, _, rest = chip_id.rpartition(":")
    return (prefix, rest) if prefix in file_names else (None, chip_id)
