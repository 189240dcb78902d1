"""A Sentinel-2 scene given as one file per band (JP2/GeoTIFF/COG, local or S3), chipped on its MGRS tile.

Band names are recognised in file names and STAC asset keys: L1C/L2A product names (`B02`, `B8A`,
`B02_10m`), BigEarthNet-style names (`..._B02.tif`) and Earth Search asset names (`blue`, `rededge1`,
`nir08`, `swir16` ...). The 20 m and 60 m bands are resampled onto the 10 m grid as each window is read.

The chip grid starts at the MGRS tile's origin (`align="tile"`), so chips of the same tile from different
scenes (dates) cover exactly the same ground; only chips that overlap the scene's files are listed, and
pixels outside the files (or DN 0, the Sentinel-2 fill value) are NaN.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

import numpy as np

from clay_core.errors import ClayInputError
from clay_core.grid.chips import ChipGrid, snap_bounds
from clay_core.grid.mgrs import MgrsTile, parse_tile, tile_at_utm
from clay_core.provenance import shared_source
from clay_core.sensors import CLAY_V0
from clay_core.sources.base import ChipData, ChipReadError, ChipRecord, nodata_fraction
from clay_core.sources.decoded import DecodedBands
from clay_core.sources.files import DatasetCache, basename, dataset_bounds, gdal_env, open_raster
from clay_core.sources.windows import read_chip, read_chip_from_band, resampling_method

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
CLAY_S2_BANDS = tuple(b for b in CLAY_V0.band_names if b in S2_BANDS)  # the 10 bands Clay v0 uses

# Earth Search (element84) asset keys -> band names.
ASSET_NAMES = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
}
_BAND_TOKEN = re.compile(r"^b(0?[1-9]|1[0-2]|8a)$", re.IGNORECASE)
_RESOLUTION_TOKEN = re.compile(r"^(\d+)m$", re.IGNORECASE)
_TILE_IN_NAME = re.compile(r"(?:^|[_/])T(\d{2}[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V])(?:_|$)")
_DATE_IN_NAME = re.compile(r"(?:^|_)(\d{8})T\d{6}(?:_|$)")

# (MGRS tile, EPSG code, chip grid, data bounds in that UTM zone)
SceneLayout = tuple[MgrsTile, int, ChipGrid, tuple[float, float, float, float]]


def canonical_band(name: str) -> str | None:
    """'B2', 'b02', 'B8A', 'B02_10m', 'blue', 'nir08' -> 'B02'/'B8A'/...; None when not a band name."""
    key = name.strip().lower()
    if key in ASSET_NAMES:
        return ASSET_NAMES[key]
    tokens = key.split("_")
    if len(tokens) == 2 and _RESOLUTION_TOKEN.match(tokens[1]):
        key = tokens[0]
    match = _BAND_TOKEN.match(key)
    if not match:
        return None
    number = match[1].upper()
    return "B8A" if number == "8A" else f"B{int(number):02d}"


def band_from_filename(url: str) -> tuple[str | None, int]:
    """Band name in a file name (searching tokens from the end) and its resolution tag in metres (0 if none)."""
    stem = basename(url).rsplit(".", 1)[0]
    tokens = stem.split("_")
    resolution = 0
    for token in reversed(tokens):
        res_match = _RESOLUTION_TOKEN.match(token)
        if res_match:
            resolution = int(res_match[1])
            continue
        band = canonical_band(token)
        if band:
            return band, resolution
    return None, resolution


def tile_from_name(text: str) -> str | None:
    match = _TILE_IN_NAME.search(text)
    return match[1] if match else None


def date_from_name(text: str) -> datetime.date | None:
    match = _DATE_IN_NAME.search(basename(text).rsplit(".", 1)[0])
    return datetime.datetime.strptime(match[1], "%Y%m%d").date() if match else None


def band_files_from(urls: list[str]) -> dict[str, str]:
    """Band name -> file among `urls`; of several files of one band (L2A R10m/R20m/R60m) the finest wins."""
    chosen: dict[str, tuple[int, str]] = {}
    for url in sorted(urls):
        band, resolution = band_from_filename(url)
        if band is None:
            continue
        rank = resolution or 10_000  # untagged files rank after tagged ones of the same band
        if band not in chosen or rank < chosen[band][0]:
            chosen[band] = (rank, url)
    return {band: url for band, (_, url) in chosen.items()}


@dataclass
class Sentinel2Scene:
    band_files: dict[str, str]  # band name -> file (local path, s3:// or https://)
    mgrs: str | None = None  # from the file names (T33UUU_...) when not given, else from the scene centre
    date: datetime.date | None = None  # from the file names (..._20170216T102101_...) when not given
    chip_size: int = 512
    stride: int | None = None
    resolution_m: float = 10.0
    resampling: str = "nearest"  # Clay's own chips were stacked with nearest resampling
    align: str = "tile"  # "tile": grid from the MGRS tile origin; "scene": from the data's upper-left corner
    bands: tuple[str, ...] = ()  # subset of the Clay S2 bands to provide (default: all present)
    source_url: str = ""  # what the output's source_url says (default: the folder of the band files)
    no_sign_request: bool = False
    _layout: SceneLayout | None = field(init=False, default=None, repr=False)  # read on first use
    _cache: DatasetCache = field(init=False, repr=False)
    _decoded: DecodedBands = field(init=False, repr=False)  # small JP2 bands decoded whole

    def __post_init__(self) -> None:
        self.band_files = {canonical_band(k) or k: v for k, v in self.band_files.items()}
        wanted = self.bands or CLAY_S2_BANDS
        unknown = [b for b in wanted if b not in CLAY_S2_BANDS]
        if unknown:
            raise ClayInputError(f"bands {unknown} are not Sentinel-2 bands Clay uses ({', '.join(CLAY_S2_BANDS)})")
        self.bands = tuple(b for b in CLAY_S2_BANDS if b in wanted and b in self.band_files)
        if not self.bands:
            raise ClayInputError(
                f"no Sentinel-2 band files recognised among {sorted(self.band_files.values())[:4]}...: name them "
                "like T33UUU_20170216T102101_B02.jp2, B02_10m.jp2 or blue.tif"
            )
        if self.align not in ("tile", "scene"):
            raise ClayInputError(f"align must be 'tile' or 'scene', got {self.align!r}")
        resampling_method(self.resampling)
        names = " ".join(self.band_files.values())
        self.mgrs = parse_tile(self.mgrs).id if self.mgrs else tile_from_name(names)
        self.date = self.date or _common_date(list(self.band_files.values()))
        if self.date is None:
            raise ClayInputError(
                "cannot tell the scene's acquisition date from its file names: "
                "give it with --date YYYY-MM-DD (QGIS: Acquisition date)"
            )
        if not self.source_url:
            self.source_url = shared_source(list(self.band_files.values()))
        self._cache = DatasetCache(self.no_sign_request)
        self._decoded = DecodedBands()

    # ---- geometry --------------------------------------------------------------------------------
    def _reference_file(self) -> str:
        """A 10 m band if there is one: its bounds are the scene's data extent on the finest grid."""
        for band in ("B02", "B03", "B04", "B08", *self.bands):
            if band in self.band_files:
                return self.band_files[band]
        raise AssertionError("a scene always has a band")

    def layout(self) -> SceneLayout:
        """(tile, epsg, chip grid, data bounds), from the header of one 10 m band file."""
        if self._layout is None:
            url = self._reference_file()
            try:
                with open_raster(url, self.no_sign_request) as dataset:
                    crs, bounds = dataset.crs, dataset_bounds(dataset)
            except Exception as error:  # noqa: BLE001 - any open failure means the scene is unusable
                raise ClayInputError(f"{url}: cannot open the band file ({error})") from None
            epsg = crs.to_epsg() if crs else None
            if not epsg:
                raise ClayInputError(f"{url}: no CRS; a Sentinel-2 band file is georeferenced in its UTM zone")
            centre = ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
            tile = parse_tile(self.mgrs) if self.mgrs else tile_at_utm(epsg, *centre)
            self.mgrs = tile.id
            if tile.epsg != epsg:
                raise ClayInputError(f"{url} is in EPSG:{epsg} but tile {tile.id} is in EPSG:{tile.epsg}")
            if self.align == "tile":
                grid = ChipGrid(tile.bounds, self.resolution_m, self.chip_size, self.stride)
            else:
                grid = ChipGrid(snap_bounds(bounds, self.resolution_m), self.resolution_m, self.chip_size, self.stride)
            self._layout = (tile, epsg, grid, bounds)
        return self._layout

    @property
    def acquired(self) -> datetime.date:
        """The acquisition date: given, or read from the file names by __post_init__ (which raises if it cannot)."""
        if self.date is None:
            raise AssertionError("Sentinel2Scene.__post_init__ resolves the date")
        return self.date

    def records(self) -> list[ChipRecord]:
        tile, epsg, grid, data_bounds = self.layout()
        date = self.acquired
        day = date.strftime("%Y%m%d")
        cells = grid.cells_intersecting(data_bounds) if self.align == "tile" else grid.cells()
        return [
            ChipRecord(
                f"{tile.id}_{day}_{row:03d}_{col:03d}",
                self.source_url,
                date,
                epsg,
                grid.chip_bounds(row, col),
                row,
                col,
                tile.id,
                self.chip_size,
                self.resolution_m,
            )
            for row, col in cells
        ]

    # ---- reading ---------------------------------------------------------------------------------
    def read(self, record: ChipRecord) -> ChipData:
        method = resampling_method(self.resampling)
        planes = []
        for band in self.bands:
            url = self.band_files[band]
            try:
                with gdal_env(url, self.no_sign_request):
                    planes.append(self._read_band(url, record, method))
            except Exception as error:  # noqa: BLE001 - reported per chip; the job goes on
                raise ChipReadError(f"{url}: cannot read chip {record.chip_id} ({error})") from None
        pixels = np.stack(planes)
        return ChipData(record, pixels, nodata_fraction(pixels))

    def _read_band(self, url: str, record: ChipRecord, method) -> np.ndarray:
        """One band of one chip [size, size]: cut from the band decoded whole when it is small, else by GDAL."""
        dataset = self._cache.get(url)
        decoded = self._decoded.get(url, dataset)
        if decoded is not None:
            plane = read_chip_from_band(
                decoded, dataset, record.utm_bounds, record.epsg, record.size, method, zero_is_nodata=True
            )
            if plane is not None:
                return plane[0]
        return read_chip(dataset, [1], record.utm_bounds, record.epsg, record.size, method, zero_is_nodata=True)[0]


def _common_date(urls: list[str]) -> datetime.date | None:
    dates = {d for d in (date_from_name(u) for u in urls) if d}
    if len(dates) > 1:
        raise ClayInputError(f"band files come from different dates {sorted(map(str, dates))}: give one scene")
    return dates.pop() if dates else None


def scene_from_files(urls: list[str], **options) -> Sentinel2Scene:
    files = band_files_from(urls)
    if not files:
        raise ClayInputError(
            f"no Sentinel-2 band files among {[basename(u) for u in urls][:5]}: expected names with B02, B8A, "
            "B02_10m or blue/red/nir..."
        )
    tiles = {t for t in (tile_from_name(u) for u in files.values()) if t}
    if len(tiles) > 1:
        raise ClayInputError(f"band files come from different MGRS tiles {sorted(tiles)}: give one scene")
    return Sentinel2Scene(files, **options)
