"""Every user-typed value checked in one place, before any work starts (stdlib only: QGIS's own Python
imports this module too, so the CLI and the Processing algorithms refuse the same input with the same line).

Each function takes the value as the user gave it (text or number) and the option's name as the user knows
it (`--chip-size` on the command line, `Chip size` in QGIS), and returns the parsed value or raises
ClayInputError whose message names the option, the value and the fix.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from clay_core.errors import ClayInputError
from clay_core.parsing import parse_bbox, parse_date

GEOPARQUET_SUFFIXES = (".gpq", ".parquet", ".geoparquet")
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".bin")
# CRS texts that mean longitude/latitude degrees, where a bbox must lie on the globe.
_LONLAT_CRS = {"", "4326", "EPSG:4326", "OGC:CRS84", "CRS84", "WGS84", "EPSG:4979", "EPSG:4258"}
_REMOTE = ("s3://", "/vsi", "http://", "https://", "stac+", "gs://", "az://")


# ---- numbers ----------------------------------------------------------------------------------------


def _bounds_phrase(minimum: float | None, maximum: float | None, show: Callable[[float], str]) -> str:
    """'between a and b', '>= a' or '<= b' for the bounds given (at least one), each written by `show`."""
    if minimum is not None and maximum is not None:
        return f"between {show(minimum)} and {show(maximum)}"
    if minimum is not None:
        return f">= {show(minimum)}"
    assert maximum is not None, "called only when a bound is broken"
    return f"<= {show(maximum)}"


def integer(
    value: object, option: str, *, minimum: int | None = None, maximum: int | None = None, hint: str = ""
) -> int:
    """An integer within [minimum, maximum] (either bound optional)."""
    try:
        number = int(str(value).strip()) if not isinstance(value, int) or isinstance(value, bool) else value
    except ValueError:
        raise ClayInputError(f"{option} {value!r} is not a whole number") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = _bounds_phrase(minimum, maximum, str)
        raise ClayInputError(f"{option} must be {bounds}, got {number}{'; ' + hint if hint else ''}")
    return number


def optional_integer(value: object | None, option: str, **bounds) -> int | None:
    """None stays None (the option was not given); anything else as `integer`."""
    return None if value is None else integer(value, option, **bounds)


def real(
    value: object,
    option: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    """A finite number within [minimum, maximum] (and > above)."""
    try:
        number = float(str(value).strip()) if not isinstance(value, int | float) else float(value)
    except ValueError:
        raise ClayInputError(f"{option} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ClayInputError(f"{option} must be a finite number, got {value!r}")
    if above is not None and not number > above:
        raise ClayInputError(f"{option} must be > {above}, got {number:g}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = _bounds_phrase(minimum, maximum, lambda bound: f"{bound:g}")
        raise ClayInputError(f"{option} must be {bounds}, got {number:g}")
    return number


def fraction(value: object, option: str) -> float:
    return real(value, option, minimum=0.0, maximum=1.0)


def chip_size(value: object | None, option: str = "--chip-size", patch: int | None = None) -> int | None:
    """None/0 from QGIS means 'the model's own'; otherwise a positive size (a multiple of the patch size
    when it is known)."""
    if value is None:
        return None
    size = integer(value, option, minimum=1, hint="leave it out to use the model's own chip size")
    if patch and size % patch:
        raise ClayInputError(f"{option} {size} must be a multiple of the model's patch size {patch}")
    return size


# ---- places -----------------------------------------------------------------------------------------


def is_lonlat_crs(crs: object | None) -> bool:
    return str(crs or "").strip().upper().replace(" ", "") in _LONLAT_CRS


def bbox(text: object, option: str = "--bbox", crs: object | None = None) -> tuple[float, float, float, float]:
    """W,S,E,N as four finite numbers with W < E and S < N; in lon/lat (no CRS or EPSG:4326) also on the globe."""
    try:
        west, south, east, north = (
            text if isinstance(text, Sequence) and not isinstance(text, str) else parse_bbox(str(text))
        )
        west, south, east, north = (float(v) for v in (west, south, east, north))
    except (ClayInputError, ValueError, TypeError):
        raise ClayInputError(f"{option} {text!r} must be four numbers W,S,E,N (xmin,ymin,xmax,ymax)") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise ClayInputError(f"{option} {text!r} holds a value that is not a finite number")
    if is_lonlat_crs(crs):
        if not (-90.0 <= south <= 90.0 and -90.0 <= north <= 90.0):
            raise ClayInputError(
                f"{option} {_shown(text)}: latitudes must lie in [-90, 90] (order W,S,E,N in "
                "degrees; for projected coordinates also give --bbox-crs)"
            )
        if not (-180.0 <= west <= 180.0 and -180.0 <= east <= 180.0):
            raise ClayInputError(
                f"{option} {_shown(text)}: longitudes must lie in [-180, 180] (order W,S,E,N in "
                "degrees; for projected coordinates also give --bbox-crs)"
            )
    if not (east > west and north > south):
        raise ClayInputError(f"{option} {_shown(text)} is empty or inverted: give W,S,E,N with W < E and S < N")
    return west, south, east, north


def point(text: object, option: str = "--point") -> tuple[float, float]:
    """LON,LAT in degrees."""
    try:
        lon, lat = (float(part) for part in str(text).replace(" ", "").split(","))
    except ValueError:
        raise ClayInputError(f"{option} must be LON,LAT in degrees (e.g. -21.3,64.1), got {text!r}") from None
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise ClayInputError(
            f"{option} {text!r} is not LON,LAT in degrees (lon in [-180, 180] first, then lat in [-90, 90])"
        )
    return lon, lat


def crs_text(text: object | None, option: str = "--bbox-crs") -> str | None:
    """The CRS as typed, or None; only its form is checked here (PROJ checks the rest when the source opens)."""
    if text is None:
        return None
    value = str(text).strip()
    if not value:
        raise ClayInputError(f"{option} is empty: give an EPSG code such as EPSG:4326")
    if value.isdigit() and not 1024 <= int(value) <= 999999:
        raise ClayInputError(f"{option} {value!r} is not an EPSG code: use e.g. EPSG:4326 or EPSG:32633")
    return value


def tile_id(text: object) -> str:
    """An MGRS tile id such as 33UUU (T33UUU and lower case accepted): its letters and zone, with the messages
    of clay_core.grid.mgrs.parse_tile, but without placing the tile (that needs pyproj, which QGIS's own
    Python may lack)."""
    from clay_core.grid.mgrs import _TILE_RE, COLUMN_SETS

    match = _TILE_RE.match(str(text).strip().upper())
    if not match:
        raise ClayInputError(
            f"{text!r} is not an MGRS tile id: expected zone, latitude band and two 100 km letters, e.g. 33UUU"
        )
    zone, band, column, row = int(match[1]), match[2], match[3], match[4]
    if not 1 <= zone <= 60:
        raise ClayInputError(f"MGRS tile {text!r}: UTM zone {zone} is not in 1..60")
    columns = COLUMN_SETS[(zone - 1) % 3]
    if column not in columns:
        raise ClayInputError(
            f"MGRS tile {text!r}: column letter {column} does not exist in zone {zone} (use one of {columns})"
        )
    return f"{zone:02d}{band}{column}{row}"


# ---- dates ------------------------------------------------------------------------------------------


def date(text: object, option: str = "--date") -> datetime.date:
    return parse_date(text if isinstance(text, datetime.date) else str(text), option)


def date_range(
    start: object, end: object, start_option: str = "--start", end_option: str = "--end"
) -> tuple[datetime.date, datetime.date]:
    first, last = date(start, start_option), date(end, end_option)
    if first > last:
        raise ClayInputError(f"{start_option} {first} is after {end_option} {last}: swap them")
    return first, last


# ---- bands ------------------------------------------------------------------------------------------


def band_map(text: str | None, option: str = "--band-map") -> dict[str, int | str] | None:
    """ "B04=1,B03=2,B02=3" -> {"B04": 1, ...}: Clay band -> band number (>= 1) or band description/file name.
    A band named twice (also under two names, e.g. red=1,B04=2) is refused."""
    if text is None or not str(text).strip():
        return None
    mapping: dict[str, int | str] = {}
    for item in str(text).split(","):
        band, sep, where = item.partition("=")
        band, where = band.strip(), where.strip()
        if not sep or not _BAND_NAME.fullmatch(band) or not where or "=" in where:
            raise ClayInputError(
                f"{option} item {item.strip()!r} must look like B04=1 (band number) or B04=red (band description)"
            )
        key = _canonical_band(band)
        if key in mapping:
            raise ClayInputError(f"{option} names band {key} twice: give each Clay band once")
        if where.lstrip("+-").isdigit():
            number = int(where)
            if number < 1:
                raise ClayInputError(f"{option} {band}={where}: band numbers start at 1")
            mapping[key] = number
        else:
            mapping[key] = where
    return mapping


_BAND_NAME = re.compile(r"[A-Za-z0-9]+")  # a Clay band: B04, B8A, red, nir08, VV ...
_S2_BAND = re.compile(r"^b0?(\d{1,2}|8a)$")
_BAND_ALIASES = {
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "nir": "B08",
    "nir08": "B8A",
    "swir16": "B11",
    "swir22": "B12",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "vv": "VV",
    "vh": "VH",
    "dem": "DEM",
    "elevation": "DEM",
}


def _canonical_band(name: str) -> str:
    """B4/b04/red -> B04 (so one band under two names is caught); other names upper-cased."""
    key = name.strip().lower()
    match = _S2_BAND.match(key)
    if match:
        number = match[1].upper()
        return "B8A" if number == "8A" else f"B{int(number):02d}"
    return _BAND_ALIASES.get(key, name.strip().upper())


# ---- files ------------------------------------------------------------------------------------------


def is_remote(spec: str) -> bool:
    return str(spec).startswith(_REMOTE)


def input_paths(specs: Iterable[object], what: str = "source") -> list[str]:
    """Local inputs must exist (remote specs are checked when they are opened)."""
    result = []
    for spec in specs:
        text = str(spec)
        if not text.strip():
            raise ClayInputError(f"an empty {what} was given")
        if not is_remote(text) and not Path(text).expanduser().exists():
            raise ClayInputError(f"{what} {text} does not exist")
        result.append(text)
    if not result:
        raise ClayInputError(f"no {what} given")
    return result


def output_file(
    path: object, overwrite: bool, *, option: str = "-o/--output", suffixes: Sequence[str] = GEOPARQUET_SUFFIXES
) -> Path:
    """An output file that can be written: the right suffix, a folder that exists and is writable, not a
    folder itself, and (without overwrite) not there yet. The order of the checks is the order of the fixes."""
    output = Path(str(path)).expanduser().absolute()
    if output.is_dir():
        example = output / ("embeddings" + (suffixes[0] if suffixes else ".gpq"))
        raise ClayInputError(f"{option} {output} is a folder; give a file name such as {example}")
    if suffixes and output.suffix.lower() not in suffixes:
        raise ClayInputError(f"{option} {output.name} should end in {' or '.join(suffixes)}")
    folder = output.parent
    blocking = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ClayInputError(f"{option} {output}: {blocking} is a file, not a folder")
    if not folder.is_dir():
        raise ClayInputError(f"output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ClayInputError(f"output folder {folder} is not writable; choose another folder")
    if output.exists() and not overwrite:
        raise ClayInputError(f"{output} already exists; choose another output or pass --overwrite")
    return output


def output_not_input(output: object, inputs: Iterable[object], option: str = "-o/--output") -> None:
    """The output is none of the inputs: with --overwrite a search result written over the embeddings it
    searched would replace them (all but the top-k rows lost)."""
    target = Path(str(output)).expanduser().resolve()
    for item in inputs:
        if Path(str(item)).expanduser().resolve() == target:
            raise ClayInputError(f"{option} {output} is also an input file: write the result to another file")


def output_folder(path: object, option: str = "-o/--output-dir") -> Path:
    folder = Path(str(path)).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ClayInputError(f"{option} {folder} is a file, not a folder")
    if not folder.is_dir():
        raise ClayInputError(f"output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ClayInputError(f"output folder {folder} is not writable; choose another folder")
    return folder


def checkpoint_file(path: object, option: str = "--checkpoint") -> str:
    """A checkpoint that exists and is a non-empty file (what is inside is checked when it loads)."""
    text = str(path)
    if is_remote(text):
        return text
    file = Path(text).expanduser()
    if not file.exists():
        raise ClayInputError(f"{option} {text} does not exist")
    if file.is_dir():
        raise ClayInputError(f"{option} {text} is a folder; give the checkpoint file (.ckpt, .pt, .safetensors)")
    if file.stat().st_size == 0:
        raise ClayInputError(f"{option} {text} is empty (0 bytes); download it again")
    return str(file.absolute())


def model_choice(checkpoint: str | None, preset: str | None) -> None:
    if bool(checkpoint) == bool(preset):
        raise ClayInputError("give exactly one of --checkpoint CKPT or --model NAME")


def _shown(text: object) -> str:
    return ",".join(f"{v:g}" for v in text) if isinstance(text, Sequence) and not isinstance(text, str) else repr(text)


# ---- what each command is given ---------------------------------------------------------------------


IMAGE_FAMILIES = ("clay-v0", "clay-v1.5")
LOCATION_FAMILIES = ("satclip",)


def model_family_for(family: str, command: str, allowed: Sequence[str], source: str) -> None:
    """A checkpoint of the wrong kind for a command (a SatCLIP location encoder given to `clay embed`)."""
    if family in allowed:
        return
    if family in LOCATION_FAMILIES:
        raise ClayInputError(
            f"{source} is a SatCLIP location encoder (it embeds lon/lat, not pixels): "
            f"{command} needs a Clay image model; use `clay embed-locations` for SatCLIP, or "
            "--satclip to add its column"
        )
    raise ClayInputError(f"{source} is a {family} model; {command} needs one of {', '.join(allowed)}")
