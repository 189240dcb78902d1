"""Opening rasters and listing files, local or on S3, the same way in every source.

GDAL reads `s3://` through /vsis3/ with the endpoint and credentials from the environment
(AWS_S3_ENDPOINT, AWS_HTTPS, AWS_VIRTUAL_HOSTING ... as ENVIRONMENT.md lists); `no_sign_request` reads
public buckets anonymously (like `aws s3 --no-sign-request`). Remote reads are retried on transient errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import rasterio
from rasterio.errors import RasterioIOError

from clay_core.errors import ClayInputError
from clay_core.grid.chips import Bounds
from clay_core.provenance import redact

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

log = logging.getLogger(__name__)

T = TypeVar("T")

REMOTE_PREFIXES = ("s3://", "http://", "https://", "/vsi")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")

# GDAL settings for cloud reads: no directory listing on open (one request per file instead of a LIST),
# HTTP retries for 429/5xx, and a block cache big enough to hold a few windows of a band.
GDAL_CLOUD_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.jp2,.JP2,.vrt",
    "VSI_CACHE": "TRUE",
}

# Messages of errors worth retrying: network trouble, throttling, server errors.
TRANSIENT_MARKERS = (
    "timed out",
    "timeout",
    "connection",
    "temporar",
    "throttl",
    "slow down",
    "503",
    "500",
    "502",
    "504",
    "429",
    "reset by peer",
    "curl error",
)


def is_remote(url: str) -> bool:
    return url.startswith(REMOTE_PREFIXES)


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def is_transient(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)


def gdal_env(url: str, no_sign_request: bool = False) -> contextlib.AbstractContextManager:
    """The rasterio environment to open/read `url` in."""
    if not is_remote(url):
        return rasterio.Env()
    options = dict(GDAL_CLOUD_OPTIONS)
    if is_s3(url) and no_sign_request:
        from rasterio.session import AWSSession

        endpoint = os.environ.get("AWS_S3_ENDPOINT")
        return rasterio.Env(session=AWSSession(aws_unsigned=True, endpoint_url=endpoint), **options)
    return rasterio.Env(**options)


def with_retries(action: Callable[[], T], url: str, attempts: int = 3, delay_s: float = 0.5) -> T:
    """Run `action`; for remote files retry transient failures with exponential backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (RasterioIOError, OSError) as error:
            if not is_remote(url) or attempt == attempts or not is_transient(error):
                raise
            log.warning("transient error on %s (attempt %d/%d): %s", redact(url), attempt, attempts, redact(str(error)))
            time.sleep(delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def open_raster(url: str, no_sign_request: bool = False) -> DatasetReader:
    """Open a raster for reading (rasterio dataset), retrying transient remote errors."""

    def _open():
        with gdal_env(url, no_sign_request):
            return rasterio.open(url)

    return with_retries(_open, url)


def dataset_bounds(dataset: DatasetReader) -> Bounds:
    """A rasterio dataset's (left, bottom, right, top) as plain floats, in its own CRS."""
    left, bottom, right, top = (float(v) for v in dataset.bounds)
    return (left, bottom, right, top)


def s3_filesystem(no_sign_request: bool = False):
    import s3fs

    # The endpoint comes from AWS_ENDPOINT_URL (botocore reads it), as for the AWS CLI.
    return s3fs.S3FileSystem(anon=no_sign_request)


def list_files(url: str, suffixes: tuple[str, ...] = RASTER_SUFFIXES, no_sign_request: bool = False) -> list[str]:
    """All files under a local folder or an s3:// prefix (recursive), sorted, with one of `suffixes`."""
    lowered = tuple(s.lower() for s in suffixes)
    if is_s3(url):
        names = _list_s3(url, no_sign_request)
    else:
        folder = Path(url)
        if not folder.is_dir():
            raise ClayInputError(f"{url} is not a folder: give a folder of rasters or an s3://bucket/prefix")
        names = [str(p) for p in folder.rglob("*") if p.is_file()]
    return sorted(n for n in names if n.lower().endswith(lowered))


def _list_s3(url: str, no_sign_request: bool) -> list[str]:
    fs = s3_filesystem(no_sign_request)
    prefix = url[len("s3://") :].rstrip("/")
    try:
        keys = with_retries(lambda: fs.find(prefix), url)
    except FileNotFoundError as error:
        raise ClayInputError(f"{url}: bucket or prefix not found ({error})") from None
    except PermissionError as error:
        hint = "" if no_sign_request else "; for a public bucket use --no-sign-request"
        raise ClayInputError(f"{url}: access denied ({error}){hint}") from None
    return [f"s3://{key}" for key in keys]


def url_exists(url: str, no_sign_request: bool = False) -> bool:
    if is_s3(url):
        return bool(s3_filesystem(no_sign_request).exists(url[len("s3://") :]))
    if is_remote(url):
        return True  # checked when opened
    return Path(url).exists()


def is_dir(url: str, no_sign_request: bool = False) -> bool:
    if is_s3(url):
        fs = s3_filesystem(no_sign_request)
        key = url[len("s3://") :].rstrip("/")
        return "/" not in key or bool(fs.isdir(key))
    return Path(url).is_dir()


def basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def stem(url: str) -> str:
    name = basename(url)
    return name.rsplit(".", 1)[0] if "." in name else name


class DatasetCache:
    """Open datasets per process and per thread (GDAL handles must not be shared); never pickled."""

    def __init__(self, no_sign_request: bool = False, max_open: int = 32) -> None:
        self.no_sign_request = no_sign_request
        self.max_open = max_open
        self._local = threading.local()

    def _handles(self) -> dict[str, DatasetReader]:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # new thread, or forked: the parent's are not ours
            local.pid, local.open = os.getpid(), {}
        return local.open

    def get(self, url: str) -> DatasetReader:
        handles = self._handles()
        dataset = handles.get(url)
        if dataset is None:
            if len(handles) >= self.max_open:
                self.close()
                handles = self._handles()
            dataset = open_raster(url, self.no_sign_request)
            handles[url] = dataset
        return dataset

    def close(self) -> None:
        """Close this thread's datasets."""
        handles = self._handles()
        for dataset in handles.values():
            with contextlib.suppress(Exception):
                dataset.close()
        handles.clear()

    def __reduce__(self) -> tuple[type[DatasetCache], tuple[bool, int]]:
        return (type(self), (self.no_sign_request, self.max_open))  # a copy starts with no open datasets
