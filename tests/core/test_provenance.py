"""source_url as output files show it: absolute paths, URLs and QGIS data source strings without credentials."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import pytest

from clay_core.provenance import public_source, redact, shared_source, strip_credentials

SECRETS = ("hunter2", "s3cr3t", "bob", "abc1234", "KEY123", "TOKEN9", "SIG77", "AKIAX", "sesstok")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text and secret not in unquote(text), (secret, text)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # XYZ layer of QGIS's wms provider: username/password/authcfg keys, user:pass@ and an API key in its url.
        (
            "type=xyz&url=https://bob:hunter2@tiles.example.com/%7Bz%7D/%7Bx%7D/%7By%7D.png?api_key%3DKEY123%26style"
            "%3Ddark&zmax=19&zmin=0&username=bob&password=hunter2&authcfg=abc1234",
            "type=xyz&url=https://tiles.example.com/%7Bz%7D/%7Bx%7D/%7By%7D.png?style=dark&zmax=19&zmin=0",
        ),
        # WMS: repeated keys and keys without a value stay; custom headers go, except the Referer.
        (
            "contextualWMSLegend=0&crs=EPSG:4326&dpiMode=7&format=image/png&layers=a&layers=b&styles&styles"
            "&http-header:referer=https://me.example&http-header:X-Auth=TOKEN9&url=https://wms.example.com/wms",
            "contextualWMSLegend=0&crs=EPSG:4326&dpiMode=7&format=image/png&layers=a&layers=b&styles&styles"
            "&http-header:referer=https://me.example&url=https://wms.example.com/wms",
        ),
        # A URI with nothing secret is left exactly as it was (same encoding).
        (
            "type=xyz&url=http://127.0.0.1:8000/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=15&zmin=0",
            "type=xyz&url=http://127.0.0.1:8000/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=15&zmin=0",
        ),
        # Presigned S3 / Azure SAS URLs: the signature, credential and session token go, the rest stays.
        (
            "https://bucket.s3.amazonaws.com/a/b.tif?X-Amz-Credential=AKIAX&X-Amz-Security-Token=sesstok"
            "&X-Amz-Signature=SIG77&versionId=3",
            "https://bucket.s3.amazonaws.com/a/b.tif?versionId=3",
        ),
        (
            "/vsicurl/https://bob:hunter2@host.example/a.tif?sig=SIG77&sv=2020",
            "/vsicurl/https://host.example/a.tif?sv=2020",
        ),
        ("WMS:https://bob:s3cr3t@host.example/wms?token=TOKEN9&layers=x", "WMS:https://host.example/wms?layers=x"),
        # A database raster (postgresraster provider): the libpq connection string loses user and password.
        (
            "dbname='gis' host=db port=5432 user='bob' password='s3cr3t' sslmode=disable table=\"public\".\"dem\"",
            'dbname=\'gis\' host=db port=5432 sslmode=disable table="public"."dem"',
        ),
        ("s3://bucket/prefix/claytile_1.tif", "s3://bucket/prefix/claytile_1.tif"),
        ("https://stac.example/items/S2A_33UUU", "https://stac.example/items/S2A_33UUU"),
    ],
)
def test_credentials_are_removed_and_everything_else_kept(source, expected):
    assert strip_credentials(source) == expected
    assert public_source(source) == expected
    assert_no_secret(public_source(source))
    assert public_source(expected) == expected  # idempotent: the writer may see an already public source


def test_a_relative_path_becomes_absolute(tmp_path, monkeypatch):
    (tmp_path / "scene").mkdir()
    (tmp_path / "scene" / "a.tif").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert public_source("scene/a.tif") == str(tmp_path / "scene" / "a.tif")
    assert public_source(os.path.join("scene", "..", "scene", "a.tif")) == str(tmp_path / "scene" / "a.tif")
    assert public_source(str(tmp_path / "scene")) == str(tmp_path / "scene")
    # A local file whose name has key=value in it (a Hive-style partition) is still a path.
    (tmp_path / "date=2020").mkdir()
    assert public_source("date=2020") == str(tmp_path / "date=2020")


def test_files_of_one_scene_share_their_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shared_source(["S2/T33UUU_B02.tif", "S2/T33UUU_B03.tif"]) == str(tmp_path / "S2")
    assert shared_source(["B02.tif", "B03.tif"]) == str(tmp_path)  # no "" for files in the working folder
    assert shared_source(["s3://b/t/B02.tif", "s3://b/t/B03.tif"]) == "s3://b/t"
    assert shared_source(["x.tif", "x.tif"]) == str(Path(tmp_path / "x.tif"))
    mixed = shared_source(["s3://b/B02.tif", "https://bob:hunter2@h.example/B03.tif"])
    assert mixed == "s3://b/B02.tif ; https://h.example/B03.tif"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "clay: error: http://127.0.0.1:8000/a.tif?token=TOKEN9&style=x: cannot open raster (HTTP 404)",
            "clay: error: http://127.0.0.1:8000/a.tif?token=***&style=x: cannot open raster (HTTP 404)",
        ),
        (
            "skipped chip c1: /vsicurl/https://bob:hunter2@host.example/a.tif?sig=SIG77&sv=2020: cannot read chip c1",
            "skipped chip c1: /vsicurl/https://host.example/a.tif?sig=***&sv=2020: cannot read chip c1",
        ),
        # A QGIS data source string quoted in a message: its keys, and the url= value percent-encoded in it.
        (
            "layer source type=xyz&url=https://bob:hunter2@t.example/%7Bz%7D.png?api_key%3DKEY123%26style%3Ddark"
            "&zmax=19&username=bob&password=hunter2&authcfg=abc1234 failed",
            "layer source type=xyz&url=https://t.example/%7Bz%7D.png?api_key%3D***%26style%3Ddark"
            "&zmax=19&username=***&password=***&authcfg=*** failed",
        ),
        (
            "url=https%3A%2F%2Fbob%3As3cr3t%40h.example%2Fwms%3Ftoken%3DTOKEN9%26layers%3Dx",
            "url=https%3A%2F%2Fh.example%2Fwms%3Ftoken%3D***%26layers%3Dx",
        ),
        (
            "https://b.s3.amazonaws.com/a.tif?X-Amz-Credential=AKIAX&X-Amz-Security-Token=sesstok"
            "&X-Amz-Signature=SIG77&versionId=3",
            "https://b.s3.amazonaws.com/a.tif?X-Amz-Credential=***&X-Amz-Security-Token=***"
            "&X-Amz-Signature=***&versionId=3",
        ),
        (
            "cannot connect: dbname='gis' host=db user='bob' password='s3 cr3t' sslmode=disable",
            "cannot connect: dbname='gis' host=db user=*** password=*** sslmode=disable",
        ),
        # A password with an @ in it: the authority ends at its last @.
        ("open https://bob:hunter2@x@host.example/a.tif now", "open https://host.example/a.tif now"),
        ("&http-header:referer=https://me.example&http-header:X-Auth=TOKEN9", None),
    ],
)
def test_redact_cleans_every_url_and_data_source_inside_free_text(text, expected):
    cleaned = redact(text)
    assert_no_secret(cleaned)
    if expected is not None:
        assert cleaned == expected
    assert redact(cleaned) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        "/data/token=abc/out.gpq written",  # a local folder named like a parameter is a path, not a secret
        r"C:\data\key=1\out.gpq",
        "/home/me/data@2x/chips/claytile_1.tif",
        "s3://bucket/prefix/claytile_1.tif: 3 of 8 chips failed",
        "--max-nodata must be between 0 and 1, got 2.0 (x=1, layers=a&styles=b)",
        "https://stac.example/v1/search answered HTTP 502",
        "",
    ],
)
def test_redact_leaves_text_without_credentials_as_it_is(text):
    assert redact(text) == text
