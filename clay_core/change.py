"""Change between dates: two embedding files of one area -> the cosine distance of each chip (or patch) to the
same footprint at the other date.

Rows are matched by footprint, never by row order (two runs may chip in another order, skip nodata chips or
cover a different extent): the key is the native footprint (`epsg` + `utm_bbox`, to the centimetre) when both
files have it, else the CRS84 polygon's bounds (to 1e-7 degrees, ~1 cm); exploded patch files add
`patch_row`/`patch_col`. For patch-level files (one (h, w, d) vector per chip), `per_patch_distance` gives the
distance of every patch. Distances are 1 - cos in [0, 2]; 0 = unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clay_core.errors import ClayInputError
from clay_core.similarity import BLOCK_ROWS, inverse_norms

_UTM_DIGITS = 2  # centimetres
_DEGREE_DIGITS = 7


@dataclass
class Matched:
    """Rows of A and B that share a footprint (same order), and how many rows of each had no partner."""

    rows_a: np.ndarray  # int64
    rows_b: np.ndarray  # int64
    only_in_a: int
    only_in_b: int
    key: str  # what matched them: "utm_bbox" or "geometry"


def footprint_keys(
    utm_bbox: np.ndarray | None, epsg: np.ndarray | None, bounds: np.ndarray | None, patch: np.ndarray | None = None
) -> tuple[list[tuple], str]:
    """One hashable key per row: (epsg, rounded utm_bbox) when given, else the rounded CRS84 bounds."""
    if utm_bbox is not None and epsg is not None:
        numbers = np.column_stack(
            [np.asarray(epsg, dtype=np.float64), np.round(np.asarray(utm_bbox, dtype=np.float64), _UTM_DIGITS)]
        )
        kind = "utm_bbox"
    elif bounds is not None:
        numbers = np.round(np.asarray(bounds, dtype=np.float64), _DEGREE_DIGITS)
        kind = "geometry"
    else:
        raise ClayInputError(
            "the files have neither utm_bbox/epsg columns nor polygon geometry: chips cannot be matched by footprint"
        )
    if patch is not None:
        numbers = np.column_stack([numbers, np.asarray(patch, dtype=np.float64)])
    return [tuple(row) for row in numbers.tolist()], kind


def match_footprints(keys_a: Sequence[tuple], keys_b: Sequence[tuple], kind: str = "utm_bbox") -> Matched:
    """Pair the rows with equal keys (A's order); a key twice in one file is refused (it would be ambiguous)."""
    by_key: dict[tuple, int] = {}
    for row, key in enumerate(keys_b):
        if by_key.setdefault(key, row) != row:
            raise ClayInputError(
                f"two rows of the second file share one footprint ({kind} {key}): give one file "
                "per date, not overlapping runs"
            )
    rows_a, rows_b, seen = [], [], set()
    for row, key in enumerate(keys_a):
        if key in seen:
            raise ClayInputError(
                f"two rows of the first file share one footprint ({kind} {key}): give one file "
                "per date, not overlapping runs"
            )
        seen.add(key)
        partner = by_key.get(key)
        if partner is not None:
            rows_a.append(row)
            rows_b.append(partner)
    if not rows_a:
        raise ClayInputError(
            "no chip of the first file has the same footprint as a chip of the second: the files "
            "cover different places or were chipped on different grids (same chip size, stride "
            "and grid are needed)"
        )
    return Matched(
        rows_a=np.asarray(rows_a, dtype=np.int64),
        rows_b=np.asarray(rows_b, dtype=np.int64),
        only_in_a=len(keys_a) - len(rows_a),
        only_in_b=len(keys_b) - len(rows_b),
        key=kind,
    )


def cosine_distance(vectors_a: np.ndarray, vectors_b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """1 - cos(a_i, b_i) for the matched rows, float32 in [0, 2]; a pair with an all-zero row gets NaN."""
    if vectors_a.shape[1] != vectors_b.shape[1]:
        raise ClayInputError(
            f"the files have {vectors_a.shape[1]} and {vectors_b.shape[1]} values per row: embed "
            "both dates with the same model and level"
        )
    out = np.empty(len(rows_a), dtype=np.float32)
    for start in range(0, len(rows_a), BLOCK_ROWS):
        a = np.asarray(vectors_a[rows_a[start : start + BLOCK_ROWS]], dtype=np.float32)
        b = np.asarray(vectors_b[rows_b[start : start + BLOCK_ROWS]], dtype=np.float32)
        inverse_a, inverse_b = inverse_norms(a), inverse_norms(b)  # once per block: each is a pass over it
        cosine = np.einsum("ij,ij->i", a, b, dtype=np.float64) * inverse_a * inverse_b
        part = 1.0 - np.clip(cosine, -1.0, 1.0)
        part[(inverse_a == 0) | (inverse_b == 0)] = np.nan
        out[start : start + len(a)] = part
    return out


def per_patch_distance(
    vectors_a: np.ndarray, vectors_b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray, shape_per_row: Sequence[int]
) -> np.ndarray:
    """[pairs, h, w] distances of patch-level rows ((h, w, d) or (g, h, w, d) per chip; groups are averaged
    first, as the patch view does), float32."""
    from clay_core.patches import explode_patch_vectors, patch_grid_shape

    h, w = patch_grid_shape(tuple(shape_per_row))
    patches_a = explode_patch_vectors(np.asarray(vectors_a)[rows_a], tuple(shape_per_row))
    patches_b = explode_patch_vectors(np.asarray(vectors_b)[rows_b], tuple(shape_per_row))
    every = np.arange(len(patches_a))
    return cosine_distance(patches_a, patches_b, every, every).reshape(len(rows_a), h, w)
