"""Any raster (one multi-band file, or one file per band) cut to an AOI and chipped in its local UTM zone.

The AOI (bbox in any CRS; the whole raster when none is given) is projected to the UTM zone of its centre
and snapped onto the model's resolution (10 m); chips cover it from its upper-left corner, and each chip
is warped from the source raster window by window. Bands are found by description/name (`B04`, `red`,
`nir08`, `VV`, `DEM` ...) or given explicitly (`band_map={"B04": 1, "B08": "nir"}`); Clay bands the
raster lacks are simply not provided (the model fills them with the normalisation mean and lists them).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from clay_core.errors import ClayInputError
from clay_core.grid.chips import ChipGrid, snap_bounds
from clay_core.grid.utm import utm_epsg
from clay_core.patches import utm_zone_of_epsg
from clay_core.provenance import SOURCE_TAG, shared_source
from clay_core.sensors import CLAY_V0
from clay_core.sources.base import ChipData, ChipReadError, ChipRecord, nodata_fraction
from clay_core.sources.files import DatasetCache, gdal_env, open_raster, stem
from clay_core.sources.sentinel2 import band_from_filename, canonical_band
from clay_core.sources.windows import read_chip, resampling_method

Bounds = tuple[float, float, float, float]
EXTRA_NAMES = {"vh": "VH", "vv": "VV", "dem": "DEM", "elevation": "DEM"}
COLOR_BANDS = {ColorInterp.red: "B04", ColorInterp.green: "B03", ColorInterp.blue: "B02"}
DATE_TAGS = ("date", "DATE", "ACQUISITION_DATE", "ACQUISITIONDATE", "DATETIME", "TIFFTAG_DATETIME")
_DATE_TEXT = re.compile(r"(\d{4})[-:]?(\d{2})[-:]?(\d{2})")


def clay_band_name(text: str | None) -> str | None:
    """A band description or file token -> the Clay band it is, or None."""
    if not text:
        return None
    band = canonical_band(text)
    if band in CLAY_V0.band_names:
        return band
    return EXTRA_NAMES.get(text.strip().lower())


@dataclass(frozen=True)
class BandSource:
    band: str  # Clay band name
    url: str
    index: int  # 1-based band number in that file


@dataclass
class RasterSource:
    files: list[str]
    bbox: Bounds | None = None  # xmin, ymin, xmax, ymax in bbox_crs
    bbox_crs: str | int = "EPSG:4326"
    band_map: dict[str, int | str] | None = None  # Clay band -> band number or description/file name
    date: datetime.date | None = None
    chip_size: int = 512
    stride: int | None = None
    resolution_m: float = 10.0
    resampling: str = "nearest"
    no_sign_request: bool = False
    bands: tuple[str, ...] = field(init=False, default=())
    _plan: list[BandSource] = field(init=False, default_factory=list, repr=False)
    # Set by __post_init__ (it raises when it cannot), so never missing on a constructed source.
    _epsg: int = field(init=False, default=0, repr=False)
    _grid: ChipGrid = field(init=False, repr=False)
    _coverage: Bounds = field(init=False, repr=False)
    _source_url: str = field(init=False, default="", repr=False)
    _cache: DatasetCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.files:
            raise ClayInputError("no raster files given: name .tif/.jp2 files or a folder that holds them")
        resampling_method(self.resampling)
        self._cache = DatasetCache(self.no_sign_request)
        headers = [self._header(url) for url in self.files]
        self._plan = self._band_plan(headers)
        order = {name: i for i, name in enumerate(CLAY_V0.band_names)}
        self._plan.sort(key=lambda b: order[b.band])
        self.bands = tuple(b.band for b in self._plan)
        self.date = self.date or _date_from(headers)
        self._layout(headers)
        # A raster QGIS fetched from a web layer names that layer: its own path is a temporary file.
        self._source_url = shared_source([h["tags"].get(SOURCE_TAG) or h["url"] for h in headers])

    # ---- setup -----------------------------------------------------------------------------------
    def _header(self, url: str) -> dict:
        try:
            with open_raster(url, self.no_sign_request) as dataset:
                if dataset.crs is None:
                    raise ClayInputError(f"{url} has no CRS: georeference it (e.g. gdal_edit.py -a_srs EPSG:...)")
                return {
                    "url": url,
                    "crs": dataset.crs,
                    "bounds": tuple(dataset.bounds),
                    "count": dataset.count,
                    "descriptions": dataset.descriptions,
                    "colorinterp": dataset.colorinterp,
                    "tags": dataset.tags(),
                }
        except ClayInputError:
            raise
        except Exception as error:  # noqa: BLE001 - any open failure is a bad input path/file
            raise ClayInputError(f"{url}: cannot open raster ({error})") from None

    def _band_plan(self, headers: list[dict]) -> list[BandSource]:
        plan = self._explicit_plan(headers) if self.band_map else self._named_plan(headers)
        if not plan:
            raise ClayInputError(
                f"cannot tell which bands {[h['url'] for h in headers][:3]} hold: name them (band descriptions "
                "B02/B03/.. or red/nir/..) or map them with --band-map, e.g. B04=1,B03=2,B02=3"
            )
        seen: dict[str, str] = {}
        for item in plan:
            if item.band in seen:
                files = sorted({stem(seen[item.band]), stem(item.url)})
                where = f"in both {files[0]} and {files[1]}" if len(files) == 2 else f"twice in {files[0]}"
                raise ClayInputError(
                    f"band {item.band} is {where}: embed each raster into its own output (or "
                    "mosaic them first, e.g. gdalbuildvrt), or choose one with --band-map"
                )
            seen[item.band] = item.url
        return plan

    def _explicit_plan(self, headers: list[dict]) -> list[BandSource]:
        plan = []
        for band, where in (self.band_map or {}).items():
            name = clay_band_name(band)
            if name is None:
                raise ClayInputError(f"band_map key {band!r} is not a Clay band ({', '.join(CLAY_V0.band_names)})")
            plan.append(self._locate(name, where, headers))
        return plan

    def _locate(self, band: str, where: int | str, headers: list[dict]) -> BandSource:
        if isinstance(where, int) or str(where).isdigit():
            number = int(where)
            if len(headers) != 1:
                raise ClayInputError(f"band_map {band}={number}: a band number needs a single raster file")
            if not 1 <= number <= headers[0]["count"]:
                raise ClayInputError(f"band_map {band}={number}: {headers[0]['url']} has {headers[0]['count']} bands")
            return BandSource(band, headers[0]["url"], number)
        for header in headers:
            for i, description in enumerate(header["descriptions"], start=1):
                if description and description.lower() == str(where).lower():
                    return BandSource(band, header["url"], i)
            if stem(header["url"]).lower() == str(where).lower() or header["url"] == where:
                return BandSource(band, header["url"], 1)
        raise ClayInputError(f"band_map {band}={where!r}: no band description or file name matches")

    @staticmethod
    def _named_plan(headers: list[dict]) -> list[BandSource]:
        plan = []
        for header in headers:
            if header["count"] == 1 and len(headers) > 1:
                band = clay_band_name(header["descriptions"][0]) or band_from_filename(header["url"])[0]
                if band in CLAY_V0.band_names:
                    plan.append(BandSource(band, header["url"], 1))
                continue
            described = [(clay_band_name(d), i) for i, d in enumerate(header["descriptions"], start=1)]
            named = [(b, i) for b, i in described if b]
            if not named:  # RGB images: colour interpretation is all there is
                named = [(COLOR_BANDS[c], i) for i, c in enumerate(header["colorinterp"], start=1) if c in COLOR_BANDS]
            if not named and header["count"] == 1:
                band = band_from_filename(header["url"])[0]
                named = [(band, 1)] if band in CLAY_V0.band_names else []
            plan.extend(BandSource(b, header["url"], i) for b, i in named)
        return plan

    def _layout(self, headers: list[dict]) -> None:
        extent_crs, extent = self._aoi(headers)
        lon_lat = transform_bounds(extent_crs, "EPSG:4326", *extent, densify_pts=21)
        self._epsg = utm_epsg((lon_lat[0] + lon_lat[2]) / 2, (lon_lat[1] + lon_lat[3]) / 2)
        utm = CRS.from_epsg(self._epsg)
        aoi = snap_bounds(transform_bounds(extent_crs, utm, *extent, densify_pts=21), self.resolution_m)
        used = {b.url for b in self._plan}
        covered = [transform_bounds(h["crs"], utm, *h["bounds"], densify_pts=21) for h in headers if h["url"] in used]
        coverage = _intersection(aoi, _union(covered))
        if coverage is None:
            lon_lat_of_rasters = [
                transform_bounds(h["crs"], "EPSG:4326", *h["bounds"], densify_pts=21)
                for h in headers
                if h["url"] in used
            ]
            raise ClayInputError(no_coverage_message(self.bbox, extent_crs, _union(lon_lat_of_rasters)))
        self._coverage = coverage
        self._grid = ChipGrid(aoi, self.resolution_m, self.chip_size, self.stride, partial=True)

    def _aoi(self, headers: list[dict]) -> tuple[CRS, Bounds]:
        if self.bbox is None:
            zones = sorted({f"EPSG:{h['crs'].to_epsg()}" for h in headers if _is_utm(h["crs"])})
            if len(zones) > 1:
                raise ClayInputError(
                    f"the rasters lie in {len(zones)} UTM zones ({', '.join(zones)}): embed each "
                    "zone into its own output, or give --bbox to embed one area in its own zone"
                )
            crs = headers[0]["crs"]
            bounds = [transform_bounds(h["crs"], crs, *h["bounds"]) for h in headers]
            return crs, _union(bounds)
        xmin, ymin, xmax, ymax = (float(v) for v in self.bbox)
        if not (xmax > xmin and ymax > ymin):
            raise ClayInputError(f"empty AOI {self.bbox}: give xmin,ymin,xmax,ymax with xmax > xmin and ymax > ymin")
        return user_crs(self.bbox_crs), (xmin, ymin, xmax, ymax)

    # ---- ChipSource ------------------------------------------------------------------------------
    @property
    def epsg(self) -> int:
        return self._epsg

    @property
    def grid(self) -> ChipGrid:
        return self._grid

    @property
    def coverage(self) -> Bounds:
        """The part of the AOI the rasters cover, in the chips' UTM zone (metres)."""
        return self._coverage

    @property
    def acquired(self) -> datetime.date:
        """The acquisition date: given, or read from the rasters' tags or names by __post_init__."""
        if self.date is None:
            raise AssertionError("RasterSource.__post_init__ resolves the date")
        return self.date

    def records(self) -> list[ChipRecord]:
        name = chip_name_prefix(self.files)
        date = self.acquired
        day = date.strftime("%Y%m%d")
        url = self._source_url
        return [
            ChipRecord(
                f"{name}_{day}_{row:03d}_{col:03d}",
                url,
                date,
                self._epsg,
                self._grid.chip_bounds(row, col),
                row,
                col,
                None,
                self.chip_size,
                self.resolution_m,
            )
            for row, col in self._grid.cells_intersecting(self._coverage)
        ]

    def read(self, record: ChipRecord) -> ChipData:
        method = resampling_method(self.resampling)
        pixels = np.empty((len(self._plan), record.size, record.size), dtype=np.float32)
        for url in dict.fromkeys(b.url for b in self._plan):  # each file once, all its bands together
            slots = [(i, b.index) for i, b in enumerate(self._plan) if b.url == url]
            try:
                with gdal_env(url, self.no_sign_request):
                    dataset = self._cache.get(url)
                    data = read_chip(
                        dataset, [index for _, index in slots], record.utm_bounds, record.epsg, record.size, method
                    )
            except Exception as error:  # noqa: BLE001 - reported per chip; the job goes on
                raise ChipReadError(f"{url}: cannot read chip {record.chip_id} ({error})") from None
            for (slot, _), plane in zip(slots, data, strict=True):
                pixels[slot] = plane
        return ChipData(record, pixels, nodata_fraction(pixels))


def no_coverage_message(bbox: Bounds | None, bbox_crs: CRS, raster_lonlat: Bounds) -> str:
    """Where the rasters are, and the likely slip: degrees typed for a bbox in metres (a projected --bbox-crs)."""
    epsg = bbox_crs.to_epsg()
    given = ",".join(f"{v:g}" for v in bbox) if bbox is not None else "the extent"
    where = ",".join(f"{v:.5f}" for v in raster_lonlat)
    degrees = bbox is not None and bbox_crs.is_projected and all(abs(v) <= 180 for v in bbox)
    fix = (
        "these numbers look like degrees: give --bbox-crs EPSG:4326"
        if degrees
        else "give a --bbox that overlaps them (W,S,E,N in the --bbox-crs)"
    )
    return (
        f"--bbox {given} ({f'EPSG:{epsg}' if epsg else bbox_crs.name}) has no raster coverage: the rasters cover "
        f"{where} (lon/lat, EPSG:4326); {fix}"
    )


def chip_name_prefix(files: list[str]) -> str:
    """The start of the chip ids: the file name, or what the names of several files share, so that per-band
    files (T33UUU_20170216T102101_B02.jp2, ..._B03.jp2) give T33UUU-20170216T102101, not the first file's
    band (which need not even be a band the model reads)."""
    tokens = [re.split(r"[^0-9A-Za-z]+", stem(url)) for url in files]
    shared = []
    for parts in zip(*tokens, strict=False):
        if len(set(parts)) > 1:
            break
        shared.append(parts[0])
    name = "-".join(part for part in (shared if len(files) > 1 else tokens[0]) if part)
    return name or "-".join(part for part in tokens[0] if part) or "raster"


def _is_utm(crs: CRS | None) -> bool:
    epsg = crs.to_epsg() if crs else None
    return epsg is not None and utm_zone_of_epsg(epsg) is not None


def user_crs(text: str | int) -> CRS:
    """A CRS typed by the user (EPSG code, authority:code, WKT, PROJ string). Checked with pyproj first: it
    raises quietly, whereas GDAL's PROJ prints "ERROR 1: PROJ: proj_create..." lines on stderr before
    rasterio raises."""
    from pyproj import CRS as ProjCRS
    from pyproj.exceptions import CRSError as ProjCRSError

    value = f"EPSG:{text}" if str(text).strip().isdigit() else str(text).strip()
    try:
        ProjCRS.from_user_input(value)
        return CRS.from_user_input(value)
    except (ProjCRSError, CRSError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ClayInputError(
            f"--bbox-crs {str(text)[:80]!r} is not a CRS PROJ knows ({reason[:120]}): give an EPSG "
            "code such as EPSG:4326 or EPSG:32633"
        ) from None


def _date_from(headers: list[dict]) -> datetime.date:
    for header in headers:
        for key in DATE_TAGS:
            value = header["tags"].get(key)
            match = _DATE_TEXT.search(value) if value else None
            if match:
                return datetime.date(int(match[1]), int(match[2]), int(match[3]))
    for header in headers:
        match = re.search(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)", stem(header["url"]))
        if match:
            try:
                return datetime.date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                continue
    raise ClayInputError(
        "cannot tell the imagery's acquisition date (no date tag or YYYYMMDD in the file name): give it with "
        "--date YYYY-MM-DD (QGIS: Acquisition date)"
    )


def _union(bounds: list[Bounds]) -> Bounds:
    return (min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds), max(b[3] for b in bounds))


def _intersection(a: Bounds, b: Bounds) -> Bounds | None:
    out = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return out if out[2] > out[0] and out[3] > out[1] else None
