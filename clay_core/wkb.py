"""Just enough WKB for our geometry columns, with numpy and the standard library only (the QGIS side
parses chip polygons in-process without shapely or GDAL).

Handles little/big endian, 2-D, ISO (1000/2000/3000) and EWKB (flag bit) Z/M variants; Points, Polygons
and MultiPolygons (a MultiPolygon's exterior ring is its first polygon's).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from clay_core.errors import ClayInputError

POINT, POLYGON, MULTIPOLYGON = 1, 3, 6
TYPE_NAMES = {
    1: "Point",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


@dataclass(frozen=True)
class Header:
    order: str  # "<" little endian, ">" big endian
    base_type: int  # 1 Point, 3 Polygon, 6 MultiPolygon, ...
    dims: int  # coordinates per vertex (2, 3 or 4)
    body: int  # offset of the first byte after the header (EWKB SRIDs skipped)


def header(wkb: bytes, offset: int = 0) -> Header:
    order = "<" if wkb[offset] == 1 else ">"
    (code,) = struct.unpack_from(order + "I", wkb, offset + 1)
    body = offset + 5
    if code & 0xE0000000:  # EWKB: Z, M and SRID as flag bits
        base_type = code & 0xFF
        dims = 2 + bool(code & 0x80000000) + bool(code & 0x40000000)
        body += 4 if code & 0x20000000 else 0
    else:  # ISO WKB: 1000 = Z, 2000 = M, 3000 = ZM
        base_type, dims = code % 1000, (2, 3, 3, 4)[min(code // 1000, 3)]
    return Header(order, base_type, dims, body)


def geometry_type_name(wkb: bytes) -> str:
    base = header(bytes(wkb)).base_type
    return TYPE_NAMES.get(base, f"WKB type {base}")


def _polygon_rings(wkb: bytes, head: Header) -> tuple[list[np.ndarray], int]:
    """All rings [K, 2] of the polygon whose body starts at head.body, and the offset after it."""
    (ring_count,) = struct.unpack_from(head.order + "I", wkb, head.body)
    offset = head.body + 4
    rings = []
    for _ in range(ring_count):
        (point_count,) = struct.unpack_from(head.order + "I", wkb, offset)
        values = np.frombuffer(wkb, dtype=head.order + "f8", count=point_count * head.dims, offset=offset + 4)
        rings.append(values.reshape(point_count, head.dims)[:, :2])
        offset += 4 + 8 * point_count * head.dims
    return rings, offset


def exterior_ring(wkb: bytes) -> np.ndarray:
    """Exterior ring [K, 2] (x, y) of a Polygon, or of the first polygon of a MultiPolygon."""
    wkb = bytes(wkb)
    head = header(wkb)
    if head.base_type == MULTIPOLYGON:
        (count,) = struct.unpack_from(head.order + "I", wkb, head.body)
        if count == 0:
            return np.empty((0, 2))
        head = header(wkb, head.body + 4)
    if head.base_type != POLYGON:
        raise ClayInputError(f"the geometry is a {TYPE_NAMES.get(head.base_type, head.base_type)}, expected a Polygon")
    rings, _ = _polygon_rings(wkb, head)
    return rings[0] if rings else np.empty((0, 2))


def vertices(wkb: bytes) -> np.ndarray:
    """Every vertex [K, 2] of a Point, Polygon or MultiPolygon (for extents)."""
    wkb = bytes(wkb)
    head = header(wkb)
    if head.base_type == POINT:
        values = np.frombuffer(wkb, dtype=head.order + "f8", count=head.dims, offset=head.body)
        return values[:2].reshape(1, 2)
    if head.base_type == POLYGON:
        rings, _ = _polygon_rings(wkb, head)
        return np.concatenate(rings) if rings else np.empty((0, 2))
    if head.base_type == MULTIPOLYGON:
        (count,) = struct.unpack_from(head.order + "I", wkb, head.body)
        offset, parts = head.body + 4, []
        for _ in range(count):
            rings, offset = _polygon_rings(wkb, header(wkb, offset))
            parts.extend(rings)
        return np.concatenate(parts) if parts else np.empty((0, 2))
    raise ClayInputError(f"unsupported geometry {TYPE_NAMES.get(head.base_type, head.base_type)} in the file")


def bounds(wkb_values: Iterable[bytes | None]) -> list[float] | None:
    """[minx, miny, maxx, maxy] over geometries (NaN coordinates, e.g. empty points, are ignored)."""
    boxes = []
    for value in wkb_values:
        if value is None:
            continue
        points = vertices(value)
        points = points[np.isfinite(points).all(axis=1)]
        if len(points):
            boxes.append((*points.min(axis=0), *points.max(axis=0)))
    if not boxes:
        return None
    array = np.array(boxes, dtype=np.float64)
    return [float(array[:, 0].min()), float(array[:, 1].min()), float(array[:, 2].max()), float(array[:, 3].max())]


def polygons_from_rings(rings: np.ndarray) -> list[bytes]:
    """WKB polygons (little endian, one ring each) from rings [N, K, 2]; no shapely needed."""
    rings = np.ascontiguousarray(rings, dtype="<f8")
    header = struct.pack("<BIII", 1, POLYGON, 1, rings.shape[1])
    return [header + ring.tobytes() for ring in rings]
