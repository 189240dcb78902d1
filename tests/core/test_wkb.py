"""clay_core.wkb: the one WKB reader (byte orders, ISO/EWKB Z/M, points, polygons, multipolygons)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from clay_core import wkb
from clay_core.errors import ClayInputError
from clay_core.parquet import rings_to_wkb, wkb_polygon_rings

SQUARE = np.array([[0, 0], [2, 0], [2, 1], [0, 1], [0, 0]], dtype=float)


def polygon(
    ring: np.ndarray,
    order: str = "<",
    code: int = 3,
    extra_dims: int = 0,
    srid: int | None = None,
    holes: tuple[np.ndarray, ...] = (),
) -> bytes:
    body = struct.pack(order + "I", 1 + len(holes))
    for part in (ring, *holes):
        coords = np.column_stack([part, np.full((len(part), extra_dims), 7.0)]) if extra_dims else part
        body += struct.pack(order + "I", len(part)) + np.asarray(coords, dtype=order + "f8").tobytes()
    head = bytes([1 if order == "<" else 0]) + struct.pack(order + "I", code)
    return head + (struct.pack(order + "I", srid) if srid is not None else b"") + body


@pytest.mark.parametrize(
    "order,code,extra,srid",
    [
        ("<", 3, 0, None),
        (">", 3, 0, None),
        ("<", 1003, 1, None),
        ("<", 2003, 1, None),
        (">", 3003, 2, None),
        ("<", 0x80000003, 1, None),
        ("<", 0xC0000003, 2, None),
        ("<", 0xA0000003, 1, 4326),
    ],
)
def test_exterior_ring_of_every_polygon_flavour(order, code, extra, srid):
    value = polygon(SQUARE, order, code, extra, srid)
    np.testing.assert_array_equal(wkb.exterior_ring(value), SQUARE)
    assert wkb.geometry_type_name(value) == "Polygon"


def test_multipolygon_holes_points_and_bounds():
    hole = np.array([[0.5, 0.2], [0.5, 0.8], [1.5, 0.8], [0.5, 0.2]])
    first, second = polygon(SQUARE, holes=(hole,)), polygon(SQUARE + 10)
    multi = b"\x01" + struct.pack("<II", 6, 2) + first + second
    np.testing.assert_array_equal(wkb.exterior_ring(multi), SQUARE)
    assert wkb.bounds([multi]) == [0.0, 0.0, 12.0, 11.0]
    point = b"\x01" + struct.pack("<I", 1) + np.array([3.0, -4.0]).tobytes()
    assert wkb.geometry_type_name(point) == "Point"
    assert wkb.bounds([point, None, first]) == [0.0, -4.0, 3.0, 1.0]
    with pytest.raises(ClayInputError, match="expected a Polygon"):
        wkb.exterior_ring(point)


def test_parquet_reader_is_the_same_parser():
    rings = np.stack([SQUARE, SQUARE + 1])
    for value, ring in zip(rings_to_wkb(rings), rings, strict=True):
        np.testing.assert_array_equal(wkb_polygon_rings(value), ring)
