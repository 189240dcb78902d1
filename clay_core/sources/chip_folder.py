"""A folder or S3 prefix of Clay chip GeoTIFFs (`claytile_{MGRS}_{YYYYMMDD}_v{VER}_{NNNN}.tif`).

Each file is one chip: 13 float32 bands in Clay v0 order (B02..B12, VH, VV, DEM), 512x512 at 10 m, with a
`date=YYYY-MM-DD` tag. `records()` reads only the file headers (in threads: one small request per file on
S3); a file whose header cannot be read still gets a record so that the pipeline reports it as skipped.
"""

from __future__ import annotations

import datetime
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from rasterio.errors import RasterioError

from clay_core.errors import ClayInputError
from clay_core.grid.mgrs import parse_tile
from clay_core.sensors import CLAY_V0
from clay_core.sources.base import ChipData, ChipReadError, ChipRecord, nodata_fraction
from clay_core.sources.files import basename, dataset_bounds, gdal_env, list_files, open_raster, stem
from clay_core.sources.windows import nodata_to_nan

CHIP_NAME = re.compile(
    r"claytile_(?P<mgrs>\d{1,2}[A-Z]{3})_(?P<date>\d{8})_v(?P<version>[0-9A-Za-z.]+)_(?P<counter>\d+)\.tiff?$",
    re.IGNORECASE,
)
CHIP_SUFFIXES = (".tif", ".tiff")
S2_BAND_COUNT = 10  # B02..B12: DN 0 in B02 marks pixels without Sentinel-2 data (the v0 fill value)
NO_LOCATION = (float("nan"),) * 4


def parse_chip_name(url: str) -> dict | None:
    match = CHIP_NAME.search(basename(url))
    if not match:
        return None
    return {
        "mgrs": match["mgrs"].upper(),
        "date": datetime.datetime.strptime(match["date"], "%Y%m%d").date(),
        "version": match["version"],
        "counter": int(match["counter"]),
    }


def parse_date(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text.strip()[:10])


@dataclass
class ChipFolder:
    """Clay chip GeoTIFFs under a folder/prefix (recursive), or an explicit list of chip files."""

    location: str | list[str]
    start: datetime.date | None = None
    end: datetime.date | None = None
    mgrs: str | None = None  # keep only chips of this tile (by file name)
    no_sign_request: bool = False
    header_threads: int = 8
    bands: tuple[str, ...] = CLAY_V0.band_names
    _records: list[ChipRecord] | None = field(default=None, repr=False)
    _problems: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.mgrs:
            self.mgrs = parse_tile(self.mgrs).id
        if self.start and self.end and self.start > self.end:
            raise ClayInputError(f"start date {self.start} is after end date {self.end}")

    # ---- listing ---------------------------------------------------------------------------------
    def files(self) -> list[str]:
        if isinstance(self.location, list):
            urls = sorted(self.location)
        else:
            urls = list_files(self.location, CHIP_SUFFIXES, self.no_sign_request)
        return [u for u in urls if self._selected_by_name(u)]

    def _selected_by_name(self, url: str) -> bool:
        parsed = parse_chip_name(url)
        if parsed is None:
            return True  # not Clay-named: its header decides
        if self.mgrs and parsed["mgrs"] != self.mgrs:
            return False
        return self._in_range(parsed["date"])

    def _in_range(self, date: datetime.date) -> bool:
        return (self.start is None or date >= self.start) and (self.end is None or date <= self.end)

    def records(self) -> list[ChipRecord]:
        if self._records is None:
            urls = self.files()
            if not urls:
                raise ClayInputError(
                    f"no chip GeoTIFFs (claytile_*.tif) under {self.location}"
                    + (f" for tile {self.mgrs}" if self.mgrs else "")
                    + (f" between {self.start} and {self.end}" if self.start or self.end else "")
                )
            with ThreadPoolExecutor(max_workers=max(1, self.header_threads)) as pool:
                self._records = list(pool.map(self._record_from_header, urls))
        return list(self._records)

    def _record_from_header(self, url: str) -> ChipRecord:
        parsed = parse_chip_name(url) or {}
        name_date = parsed.get("date")
        try:
            with open_raster(url, self.no_sign_request) as dataset:
                return self._record(url, dataset, parsed)
        except (RasterioError, OSError, ValueError) as error:
            record = ChipRecord(
                stem(url),
                url,
                name_date or datetime.date(1970, 1, 1),
                0,
                NO_LOCATION,
                -1,
                -1,
                parsed.get("mgrs"),
                0,
                0.0,
            )
            self._problems[record.chip_id] = f"{url}: cannot open ({_short(error)}): corrupt or truncated file?"
            return record

    def _record(self, url: str, dataset, parsed: dict) -> ChipRecord:
        chip_id = stem(url)
        tag = dataset.tags().get("date")
        date = parse_date(tag) if tag else parsed.get("date")
        epsg = dataset.crs.to_epsg() if dataset.crs else None
        if date is None:
            self._problems[chip_id] = f"{url}: no `date` tag and no YYYYMMDD in the file name"
        elif not self._in_range(date):
            self._problems[chip_id] = (
                f"{url}: date {date} (from its `date` tag) is outside the requested range {self.start}..{self.end}"
            )
        if not epsg:
            self._problems[chip_id] = f"{url}: no CRS (a chip must be georeferenced in its UTM zone)"
            return ChipRecord(
                chip_id,
                url,
                date or datetime.date(1970, 1, 1),
                0,
                NO_LOCATION,
                -1,
                -1,
                parsed.get("mgrs") or self.mgrs,
                0,
                0.0,
            )
        bounds = dataset_bounds(dataset)
        resolution = float(dataset.transform.a)
        mgrs = parsed.get("mgrs") or self.mgrs
        row, col = _row_col(mgrs, epsg, bounds, dataset.width * resolution, parsed.get("counter", 0))
        return ChipRecord(
            chip_id,
            url,
            date or datetime.date(1970, 1, 1),
            epsg,
            bounds,
            row,
            col,
            mgrs,
            int(dataset.width),
            resolution,
        )

    # ---- reading ---------------------------------------------------------------------------------
    def read(self, record: ChipRecord) -> ChipData:
        if self._records is None:
            self.records()
        problem = self._problems.get(record.chip_id)
        if problem:
            raise ChipReadError(problem)
        try:
            pixels = self._read_pixels(record)
        except ChipReadError:
            raise
        except (RasterioError, OSError, ValueError) as error:
            raise ChipReadError(
                f"{record.source_url}: cannot read ({_short(error)}): corrupt or truncated file?"
            ) from None
        return ChipData(record, pixels, nodata_fraction(pixels))

    def _read_pixels(self, record: ChipRecord) -> np.ndarray:
        url = record.source_url
        with gdal_env(url, self.no_sign_request), open_raster(url, self.no_sign_request) as dataset:
            if dataset.count != len(self.bands):
                raise ChipReadError(
                    f"{url}: {dataset.count} bands, a Clay chip has {len(self.bands)} ({', '.join(self.bands)})"
                )
            if dataset.width != dataset.height:
                raise ChipReadError(f"{url}: chip is {dataset.width}x{dataset.height} pixels, expected square")
            pixels = nodata_to_nan(dataset.read(out_dtype=np.float32), dataset, list(range(1, dataset.count + 1)))
        no_optical = pixels[0] == 0  # B02 == 0: the S2 fill value, i.e. no optical data there
        pixels[:S2_BAND_COUNT, no_optical] = np.nan
        return pixels


def _row_col(mgrs: str | None, epsg: int, bounds: tuple[float, ...], span: float, counter: int) -> tuple[int, int]:
    """Position on the MGRS tile's chip grid (chip-size steps from the tile origin), else the file counter."""
    if mgrs and span > 0:
        try:
            tile = parse_tile(mgrs)
        except ClayInputError:
            tile = None
        if tile is not None and tile.epsg == epsg:
            x0, y0 = tile.origin
            return round((y0 - bounds[3]) / span), round((bounds[0] - x0) / span)
    return 0, counter


def _short(error: BaseException) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
