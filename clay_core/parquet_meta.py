"""GeoParquet file metadata without pyarrow: the footer's key-value pairs (`geo`, `clay`) read with the
standard library, and what those keys say (the geometry CRS, the shape of one row's vector).

Why: when QGIS reads a GeoParquet file through GDAL's Parquet driver (no pyarrow in QGIS's Python), GDAL does
not expose the file's own key-value metadata, and the `clay` key says how to reshape each row's vector.
The footer is small: a Thrift compact-protocol FileMetaData struct, followed by its length and b"PAR1".
Only field 5 (key_value_metadata: list<KeyValue{1: key, 2: value}>) is decoded; everything else is skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clay_core.errors import ClayInputError

GEO_KEY = b"geo"
CLAY_KEY = b"clay"
GEOMETRY = "geometry"

MAGIC = b"PAR1"
KEY_VALUE_FIELD = 5
# Thrift compact types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)


class _Compact:
    """A cursor over Thrift compact-protocol bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("truncated footer")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        result = shift = 0
        while True:
            value = self.byte()
            result |= (value & 0x7F) << shift
            if not value & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def binary(self) -> bytes:
        size = self.varint()
        value = self.data[self.pos : self.pos + size]
        if len(value) != size:
            raise ValueError("truncated footer")
        self.pos += size
        return value

    def fields(self):
        """(field id, type) of each field of the struct at the cursor, up to its stop byte."""
        last = 0
        while True:
            head = self.byte()
            if head == 0:
                return
            delta, kind = head >> 4, head & 0x0F
            last = last + delta if delta else self.zigzag()
            yield last, kind

    def list_header(self) -> tuple[int, int]:
        head = self.byte()
        size = head >> 4
        return (self.varint() if size == 15 else size), head & 0x0F

    def skip(self, kind: int, in_container: bool = False) -> None:
        if kind in (_TRUE, _FALSE):
            if in_container:  # a bool inside a list/map is a whole byte; in a struct it lives in the type
                self.byte()
        elif kind == _BYTE:
            self.byte()
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.pos += 8
        elif kind == _BINARY:
            self.binary()
        elif kind in (_LIST, _SET):
            size, element = self.list_header()
            for _ in range(size):
                self.skip(element, in_container=True)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4, in_container=True)
                    self.skip(types & 0x0F, in_container=True)
        elif kind == _STRUCT:
            for _, field_kind in self.fields():
                self.skip(field_kind)
        else:
            raise ValueError(f"unknown Thrift compact type {kind}")

    def key_value(self) -> tuple[bytes, bytes | None]:
        key, value = b"", None
        for field_id, kind in self.fields():
            if field_id == 1 and kind == _BINARY:
                key = self.binary()
            elif field_id == 2 and kind == _BINARY:
                value = self.binary()
            else:
                self.skip(kind)
        return key, value


def footer_bytes(path: str | Path) -> bytes:
    path = Path(path)
    try:
        with path.open("rb") as stream:
            size = stream.seek(0, 2)
            if size < 12:
                raise ClayInputError(f"{path} is not a Parquet file (too short)")
            stream.seek(size - 8)
            tail = stream.read(8)
            length = int.from_bytes(tail[:4], "little")
            if tail[4:] != MAGIC or length > size - 12:
                raise ClayInputError(f"{path} is not a Parquet file (no PAR1 footer)")
            stream.seek(size - 8 - length)
            return stream.read(length)
    except OSError as exc:
        raise ClayInputError(f"cannot read {path}: {exc}") from exc


def key_value_metadata(path: str | Path) -> dict[bytes, bytes]:
    """The file-level key-value metadata, as pyarrow's `schema.metadata` gives it (keys without a value are
    left out)."""
    cursor = _Compact(footer_bytes(path))
    metadata: dict[bytes, bytes] = {}
    try:
        for field_id, kind in cursor.fields():
            if field_id == KEY_VALUE_FIELD and kind == _LIST:
                size, _ = cursor.list_header()
                for _ in range(size):
                    key, value = cursor.key_value()
                    if value is not None:
                        metadata[key] = value
            else:
                cursor.skip(kind)
    except (ValueError, IndexError) as exc:
        raise ClayInputError(f"{path}: the Parquet footer could not be decoded ({exc})") from exc
    return metadata


def json_key(metadata: Mapping[bytes, bytes] | None, key: bytes) -> dict[str, Any]:
    """One JSON value of a file's key-value metadata ({} when absent)."""
    if not metadata or key not in metadata:
        return {}
    try:
        return json.loads(metadata[key])
    except ValueError as exc:
        raise ClayInputError(f"the file's {key.decode()!r} metadata is not valid JSON: {exc}") from exc


def row_shape_of(clay: Mapping[str, Any], width: int) -> tuple[int, ...]:
    """Shape of one row's vector from the `clay` metadata; flat when the metadata is absent or does not fit."""
    shape = tuple(int(v) for v in clay.get("row_shape", ())) or (width,)
    return shape if math.prod(shape) == width else (width,)


def geometry_crs(geo: Mapping[str, Any]) -> Any:
    """The primary geometry column's CRS from `geo` metadata: PROJJSON/string, "OGC:CRS84" when the column
    omits it (the GeoParquet default), None when the file has no `geo` metadata at all."""
    if not geo:
        return None
    primary = geo.get("primary_column", GEOMETRY)
    return geo.get("columns", {}).get(primary, {}).get("crs", "OGC:CRS84")
