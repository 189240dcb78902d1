"""Sentinel-2 scenes of one MGRS tile from a STAC API (Earth Search style), read as Sentinel2Scene sources.

Spec: `stac+https://earth-search.aws.element84.com/v1` (or `stac+http://...`). The search asks for the
collection (`sentinel-2-l2a`), the date range, the tile (the `query` extension with Earth Search's
`mgrs:*` properties, plus an `intersects` point at the tile centre for APIs without it) and sorts by cloud
cover; items are checked again here (`mgrs:*`, `s2:mgrs_tile`, `grid:code`, `sentinel:*` properties), one
scene per day is kept (the least cloudy), and band assets are picked by name (`blue`, `B02`, ...).
"""

from __future__ import annotations

import datetime
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from clay_core.errors import ClayInputError
from clay_core.grid.mgrs import MgrsTile, parse_tile
from clay_core.sources.multi import MultiSource
from clay_core.sources.sentinel2 import CLAY_S2_BANDS, Sentinel2Scene, canonical_band

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "sentinel-2-l2a"
PAGE_SIZE = 100
MAX_PAGES = 50


@dataclass(frozen=True)
class StacScene:
    item_id: str
    date: datetime.date
    cloud_cover: float | None
    tile: str
    band_files: dict[str, str]
    self_href: str


def api_root(spec: str) -> str:
    if not spec.startswith(("stac+http://", "stac+https://")):
        raise ClayInputError(f"{spec!r} is not a STAC API spec: use stac+https://host/path")
    return spec[len("stac+") :].rstrip("/")


def _http_json(url: str, body: dict | None = None, attempts: int = 4) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/geo+json, application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as error:
            transient = error.code in (429, 500, 502, 503, 504)
            if not transient or attempt == attempts:
                detail = error.read().decode(errors="replace")[:200]
                raise ClayInputError(f"STAC API {url} answered HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            if attempt == attempts:
                raise ClayInputError(f"STAC API {url} unreachable ({error}): check the URL/network") from None
        time.sleep(0.5 * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def search_items(
    root: str,
    tile: MgrsTile,
    start: datetime.date | None,
    end: datetime.date | None,
    collection: str = DEFAULT_COLLECTION,
    max_cloud: float | None = None,
) -> list[dict]:
    """All items of the tile in the date range (following `next` links)."""
    from pyproj import Transformer

    x0, y0 = tile.origin
    centre = Transformer.from_crs(tile.epsg, 4326, always_xy=True).transform(x0 + 54_900, y0 - 54_900)
    query: dict = {
        "mgrs:utm_zone": {"eq": tile.zone},
        "mgrs:latitude_band": {"eq": tile.band},
        "mgrs:grid_square": {"eq": tile.column + tile.row},
    }
    if max_cloud is not None:
        query["eo:cloud_cover"] = {"lte": max_cloud}
    body: dict | None = {  # None: the next page is a GET
        "collections": [collection],
        "datetime": f"{_iso(start, 'T00:00:00Z')}/{_iso(end, 'T23:59:59Z')}",
        "intersects": {"type": "Point", "coordinates": list(centre)},
        "query": query,
        "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}],
        "limit": PAGE_SIZE,
    }
    url, items = f"{root}/search", []
    for _ in range(MAX_PAGES):
        page = _http_json(url, body)
        items.extend(page.get("features", []))
        link = next((lk for lk in page.get("links", []) if lk.get("rel") == "next"), None)
        if not link:
            break
        url = link["href"]
        if link.get("method", "GET").upper() == "POST":
            body = {**(body or {}), **link.get("body", {})} if link.get("merge") else link.get("body", body)
        else:
            body = None
    return items


def _iso(day: datetime.date | None, suffix: str) -> str:
    return day.isoformat() + suffix if day else ".."


def item_tile(properties: dict) -> str | None:
    """The item's MGRS tile id from whichever convention its properties use."""
    if "mgrs:utm_zone" in properties:
        return (
            f"{int(properties['mgrs:utm_zone']):02d}{properties.get('mgrs:latitude_band', '')}"
            f"{properties.get('mgrs:grid_square', '')}"
        )
    if "s2:mgrs_tile" in properties:
        return str(properties["s2:mgrs_tile"])
    if str(properties.get("grid:code", "")).startswith("MGRS-"):
        return properties["grid:code"][len("MGRS-") :]
    if "sentinel:utm_zone" in properties:
        return (
            f"{int(properties['sentinel:utm_zone']):02d}{properties.get('sentinel:latitude_band', '')}"
            f"{properties.get('sentinel:grid_square', '')}"
        )
    return None


def band_assets(item: dict, base_url: str) -> dict[str, str]:
    """Clay S2 band -> asset href (COG preferred over JP2 copies such as Earth Search's `blue-jp2`)."""
    found: dict[str, tuple[int, str]] = {}
    for key, asset in item.get("assets", {}).items():
        is_jp2 = key.endswith("-jp2") or str(asset.get("type", "")).endswith("jp2")
        band = canonical_band(key.removesuffix("-jp2"))
        if band not in CLAY_S2_BANDS:
            continue
        rank = 1 if is_jp2 else 0
        if band not in found or rank < found[band][0]:
            found[band] = (rank, _resolve(asset["href"], base_url))
    return {band: href for band, (_, href) in found.items()}


def _resolve(href: str, base_url: str) -> str:
    if "://" in href or href.startswith("/"):
        return href.removeprefix("file://")
    return urllib.parse.urljoin(base_url, href)


def find_scenes(
    spec: str,
    mgrs: str,
    start: datetime.date | None = None,
    end: datetime.date | None = None,
    collection: str = DEFAULT_COLLECTION,
    max_cloud: float | None = None,
    max_scenes: int | None = None,
) -> list[StacScene]:
    """The tile's scenes in the range: one per day (least cloudy), the `max_scenes` clearest, by date."""
    root, tile = api_root(spec), parse_tile(mgrs)
    best: dict[datetime.date, StacScene] = {}
    for item in search_items(root, tile, start, end, collection, max_cloud):
        scene = _scene(item, root, tile)
        if scene is None:
            continue
        if (start and scene.date < start) or (end and scene.date > end):
            continue
        if max_cloud is not None and scene.cloud_cover is not None and scene.cloud_cover > max_cloud:
            continue
        current = best.get(scene.date)
        if current is None or _cloud(scene) < _cloud(current):
            best[scene.date] = scene
    scenes = sorted(best.values(), key=_cloud)
    if max_scenes:
        scenes = scenes[:max_scenes]
    return sorted(scenes, key=lambda s: s.date)


def _cloud(scene: StacScene) -> float:
    return scene.cloud_cover if scene.cloud_cover is not None else 100.0


def _scene(item: dict, root: str, tile: MgrsTile) -> StacScene | None:
    properties = item.get("properties", {})
    tile_id = item_tile(properties)
    if tile_id is not None and tile_id.upper() != tile.id:
        return None
    when = properties.get("datetime") or properties.get("start_datetime")
    if not when:
        return None
    self_href = next(
        (lk["href"] for lk in item.get("links", []) if lk.get("rel") == "self"),
        f"{root}/collections/{item.get('collection', DEFAULT_COLLECTION)}/items/{item.get('id')}",
    )
    files = band_assets(item, self_href)
    if not files:
        log.warning("STAC item %s has no Sentinel-2 band assets; skipped", item.get("id"))
        return None
    date = datetime.date.fromisoformat(when[:10])
    return StacScene(item.get("id", ""), date, properties.get("eo:cloud_cover"), tile.id, files, self_href)


def stac_source(
    spec: str,
    mgrs: str | None = None,
    start: datetime.date | None = None,
    end: datetime.date | None = None,
    collection: str = DEFAULT_COLLECTION,
    max_cloud: float | None = None,
    max_scenes: int | None = None,
    **scene_options,
) -> MultiSource:
    if not mgrs:
        raise ClayInputError("a STAC source needs an MGRS tile (e.g. embed-mgrs 33UUU --source stac+https://...)")
    scenes = find_scenes(spec, mgrs, start, end, collection, max_cloud, max_scenes)
    if not scenes:
        raise ClayInputError(
            f"STAC search at {api_root(spec)} found no {collection} scene of {mgrs} "
            f"between {start or '..'} and {end or '..'}"
        )
    parts = [
        Sentinel2Scene(s.band_files, mgrs=s.tile, date=s.date, source_url=s.self_href, **scene_options) for s in scenes
    ]
    return MultiSource(parts)
