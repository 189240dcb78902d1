"""Where pixels come from: chip folders (local/S3), Sentinel-2 scenes (band files, STAC), any raster + AOI.

`open_source(spec, **options)` picks the source from the spec:
- `stac+https://...` / `stac+http://...`: STAC API search (options mgrs, start, end, max_cloud, max_scenes);
- any spec with `bbox=` (and `bbox_crs=`): RasterSource, the rasters reprojected to the AOI's UTM zone;
- a folder / `s3://bucket/prefix` holding `claytile_*.tif`: ChipFolder (options start, end, mgrs);
- a folder or list of per-band Sentinel-2 files: Sentinel2Scene on its MGRS tile grid;
- one raster file (or per-band files that are not in a UTM zone): RasterSource over the whole raster.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from clay_core.errors import ClayInputError
from clay_core.parsing import parse_bbox, parse_date
from clay_core.sources.base import ChipData, ChipReadError, ChipRecord, ChipSource, nodata_fraction

__all__ = ["ChipData", "ChipReadError", "ChipRecord", "ChipSource", "nodata_fraction", "open_source"]

GRID_OPTIONS = ("chip_size", "stride", "resolution_m", "resampling")
FOLDER_OPTIONS = ("start", "end", "mgrs", "no_sign_request")
SCENE_OPTIONS = (*GRID_OPTIONS, "mgrs", "date", "align", "bands", "no_sign_request")
RASTER_OPTIONS = (*GRID_OPTIONS, "bbox", "bbox_crs", "band_map", "date", "no_sign_request")
STAC_OPTIONS = ("mgrs", "start", "end", "collection", "max_cloud", "max_scenes")
KNOWN_OPTIONS = set(FOLDER_OPTIONS + SCENE_OPTIONS + RASTER_OPTIONS + STAC_OPTIONS)


def open_source(spec: str | os.PathLike | Sequence[str | os.PathLike], **options) -> ChipSource:
    """A ChipSource for `spec` (see the module docstring). Options that are None count as not given."""
    options = _clean(options)
    specs = [str(spec)] if isinstance(spec, str | os.PathLike) else [str(s) for s in spec]
    if not specs:
        raise ClayInputError("no source given")
    if len(specs) == 1 and specs[0].startswith("stac+"):
        from clay_core.sources.stac import stac_source

        return stac_source(specs[0], **_pick(options, STAC_OPTIONS), **_pick(options, SCENE_OPTIONS, "mgrs", "date"))
    if "bbox" in options:
        return _raster(_expand(specs, options), options)
    from clay_core.sources.files import is_dir

    no_sign = options.get("no_sign_request", False)
    if len(specs) > 1 and all(is_dir(s, no_sign) for s in specs):
        from clay_core.sources.multi import MultiSource

        return MultiSource([open_source(s, **options) for s in specs])
    source = _from_folder(specs[0], options) if len(specs) == 1 and is_dir(specs[0], no_sign) else None
    source = source or _from_files(specs, options)
    _check_band_map_used(source, specs, options)
    return source


def _check_band_map_used(source: ChipSource, specs: list[str], options: dict) -> None:
    """A band map is read by rasters only: a Sentinel-2 scene or a chip folder names its bands itself, and
    silently ignoring the map would embed other bands than the user asked for."""
    from clay_core.sources.chip_folder import ChipFolder
    from clay_core.sources.raster import RasterSource

    if "band_map" in options and not isinstance(source, RasterSource):
        kind = "a folder of Clay chips" if isinstance(source, ChipFolder) else "a Sentinel-2 scene"
        raise ClayInputError(
            f"--band-map does not apply to {', '.join(specs[:2])}: it is {kind}, whose file names say which "
            "band is which; drop --band-map"
        )


def _from_folder(url: str, options: dict) -> ChipSource:
    from clay_core.sources.chip_folder import ChipFolder, parse_chip_name
    from clay_core.sources.files import list_files

    files = list_files(url, no_sign_request=options.get("no_sign_request", False))
    if not files:
        raise ClayInputError(f"no rasters (.tif/.jp2) under {url}")
    if any(parse_chip_name(f) for f in files):
        return ChipFolder(url, **_pick(options, FOLDER_OPTIONS))
    return _from_files(files, options)


def _from_files(files: list[str], options: dict) -> ChipSource:
    from clay_core.sources.chip_folder import ChipFolder, parse_chip_name
    from clay_core.sources.files import url_exists
    from clay_core.sources.sentinel2 import band_files_from, band_from_filename, scene_from_files

    missing = [f for f in files if not url_exists(f, options.get("no_sign_request", False))]
    if missing:
        raise ClayInputError(f"not found: {', '.join(missing[:3])}")
    if all(parse_chip_name(f) for f in files):
        return ChipFolder(files, **_pick(options, FOLDER_OPTIONS))
    band_files = band_files_from(files)
    # A scene only when every file is a band file: a raster without a band in its name would be dropped.
    every_file_a_band = all(band_from_filename(f)[0] for f in files)
    if len(files) > 1 and band_files and every_file_a_band and _in_utm(next(iter(band_files.values())), options):
        return _check_scene_date(scene_from_files(files, **_pick(options, SCENE_OPTIONS)), options)
    return _raster(files, options)


def _check_scene_date(scene, options: dict):
    start, end = options.get("start"), options.get("end")
    if (start and scene.date < start) or (end and scene.date > end):
        raise ClayInputError(
            f"the scene was taken on {scene.date}, outside the requested range {start or '..'} to {end or '..'}"
        )
    return scene


def _raster(files: list[str], options: dict) -> ChipSource:
    from clay_core.sources.raster import RasterSource

    return RasterSource(files, **_pick(options, RASTER_OPTIONS))


def _expand(specs: list[str], options: dict) -> list[str]:
    from clay_core.sources.files import is_dir, list_files

    no_sign = options.get("no_sign_request", False)
    files: list[str] = []
    for spec in specs:
        if is_dir(spec, no_sign):
            found = list_files(spec, no_sign_request=no_sign)
            if not found:
                raise ClayInputError(f"no rasters (.tif/.jp2) under {spec}")
            files.extend(found)
        else:
            files.append(spec)
    return files


def _in_utm(url: str, options: dict) -> bool:
    from clay_core.sources.files import open_raster

    try:
        with open_raster(url, options.get("no_sign_request", False)) as dataset:
            epsg = dataset.crs.to_epsg() if dataset.crs else None
    except Exception as error:  # noqa: BLE001
        raise ClayInputError(f"{url}: cannot open ({error})") from None
    from clay_core.patches import utm_zone_of_epsg

    return epsg is not None and utm_zone_of_epsg(epsg) is not None


def _clean(options: dict) -> dict:
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ClayInputError(f"unknown source option(s) {unknown}; known: {', '.join(sorted(KNOWN_OPTIONS))}")
    for key in ("start", "end", "date"):
        if isinstance(options.get(key), str):
            options[key] = parse_date(options[key], key)
    if isinstance(options.get("bbox"), str):
        options["bbox"] = parse_bbox(options["bbox"])
    return options


def _pick(options: dict, names: Sequence[str], *exclude: str) -> dict:
    return {k: v for k, v in options.items() if k in names and k not in exclude}
