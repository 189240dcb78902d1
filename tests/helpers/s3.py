"""A local S3 (moto server on 127.0.0.1) for tests that go through the real S3 protocol.

Import the fixtures into a conftest.py (no pytest_plugins needed):

    from tests.helpers.s3 import s3_bucket, s3_server  # noqa: F401

`s3_server` (session) starts the server and sets the AWS_* environment that boto3, s3fs and GDAL
(`rasterio.open("s3://...")`) all honour, restoring the previous values afterwards; `s3_bucket`
(per test) creates a fresh bucket and offers `upload(path, key)` / `upload_dir(folder, prefix)`.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Variables that would point clients at real AWS (or at credentials of the user) while tests run.
_SHADOWING = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_PROFILE",
    "AWS_NO_SIGN_REQUEST",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_environment(port: int) -> dict[str, str]:
    """The environment that makes boto3, s3fs and GDAL talk to a local S3 on `port`."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_S3_ENDPOINT": f"127.0.0.1:{port}",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def _clear_client_caches() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of a moto S3 server on 127.0.0.1; the AWS_* environment points at it meanwhile."""
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as patch:
        for name in _SHADOWING:
            patch.delenv(name, raising=False)
        for name, value in s3_environment(port).items():
            patch.setenv(name, value)
        _clear_client_caches()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            _clear_client_caches()
            server.stop()


@dataclass
class S3Bucket:
    endpoint: str
    name: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}".rstrip("/") if key else f"s3://{self.name}"

    def upload(self, path: str | Path, key: str) -> str:
        self.client().upload_file(str(path), self.name, key)
        return self.url(key)

    def upload_dir(self, folder: str | Path, prefix: str) -> str:
        """Upload every file under `folder` (recursively) below `prefix`; returns the s3:// prefix URL."""
        folder = Path(folder)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.upload(path, f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}")
        return self.url(prefix.rstrip("/"))

    def put_bytes(self, data: bytes, key: str) -> str:
        self.client().put_object(Bucket=self.name, Key=key, Body=data)
        return self.url(key)


def make_bucket(endpoint: str, name: str | None = None) -> S3Bucket:
    bucket = S3Bucket(endpoint, name or f"test-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.name)
    return bucket


@pytest.fixture
def s3_bucket(s3_server: str) -> Iterator[S3Bucket]:
    """A fresh, empty bucket on the local S3 (unique name: GDAL and s3fs caches never see stale keys)."""
    _clear_client_caches()
    yield make_bucket(s3_server)
    _clear_client_caches()
