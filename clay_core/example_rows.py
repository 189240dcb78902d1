"""The examples of a search -> rows of an EmbeddingCollection (clay_core.collection): chip ids (FILE:ID allowed),
LON,LAT points (the chip containing each) and labelled point/polygon files. `clay similar` and `clay classify`
pick their positives and negatives with it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from clay_core.errors import ClayInputError

if TYPE_CHECKING:
    import geopandas
    import numpy as np

    from clay_core.collection import EmbeddingCollection


def point_rings(collection: EmbeddingCollection) -> list[np.ndarray]:
    """Chip polygons to look points up in; a file of points (e.g. from embed-locations) has none."""
    from clay_core.similarity import exterior_rings
    from clay_core.wkb import geometry_type_name

    wkb = collection.geometry_wkb
    kinds = {geometry_type_name(value) for value in wkb[:1000] if value is not None}
    if not wkb or not kinds <= {"Polygon", "MultiPolygon"}:
        found = ", ".join(sorted(kinds)) or "no geometry"
        raise ClayInputError(
            f"--point/--negative-point need chip polygons, but the embeddings hold {found}: "
            "pick the query rows with --chip ID (point files: the point id) instead"
        )
    return exterior_rings(wkb)


class ExampleFinder:
    """Rows of a collection for chip ids and lon/lat points (the point lookup is prepared once)."""

    def __init__(self, collection: EmbeddingCollection) -> None:
        self.collection = collection
        self._rings: list[np.ndarray] | None = None
        self._bounds: np.ndarray | None = None

    def rows_at(self, lon: float, lat: float) -> list[int]:
        from clay_core.similarity import ring_bounds, rows_at_point

        if self._rings is None:
            self._rings = point_rings(self.collection)
            self._bounds = ring_bounds(self._rings)
        return rows_at_point(self._rings, lon, lat, bounds=self._bounds)

    def rows(self, chip_ids: list[str], points: list[str], what: str) -> list[int]:
        """Rows for chip ids (FILE:ID allowed) and "LON,LAT" texts (the chip containing each point)."""
        from clay_core.validate import point

        rows = self.collection.rows_of_ids(chip_ids, what) if chip_ids else []
        for text in points:
            lon, lat = point(text, f"{what} point")
            found = self.rows_at(lon, lat)
            if not found:
                raise ClayInputError(
                    f"the {what} point {lon:.6f},{lat:.6f} (lon,lat) is not inside any chip of "
                    "the embeddings: give a point on a chip"
                )
            rows.append(found[0])
        return rows

    def labelled_rows(self, path: Path, field: str, positive_values: list[str]) -> tuple[list[int], list[int], int]:
        """(positive rows, negative rows, points outside every chip) from a point/polygon file with a label
        field (any OGR format or GeoParquet; features are placed by a point on their surface, in lon/lat)."""
        from clay_core.classify import parse_label

        frame = read_label_file(path)
        if field not in frame.columns:
            names = ", ".join(str(c) for c in frame.columns if c != "geometry")
            raise ClayInputError(f"{path} has no field {field!r}; its fields: {names or 'none'}")
        positives: list[int] = []
        negatives: list[int] = []
        outside = 0
        points = frame.geometry.representative_point()
        for point, value in zip(points, frame[field], strict=True):
            label = parse_label(value, positive_values)
            if label is None or point is None or point.is_empty:
                continue
            found = self.rows_at(float(point.x), float(point.y))
            if not found:
                outside += 1
                continue
            (positives if label else negatives).append(found[0])
        return positives, negatives, outside


def read_label_file(path: Path) -> geopandas.GeoDataFrame:
    """A GeoDataFrame in lon/lat (EPSG:4326) from any vector file geopandas reads, GeoParquet included."""
    import geopandas

    if not path.is_file():
        raise ClayInputError(f"label file {path} does not exist")
    try:
        if path.suffix.lower() in (".gpq", ".parquet", ".geoparquet"):
            frame = geopandas.read_parquet(path)
        else:
            frame = geopandas.read_file(path)
    except Exception as exc:  # noqa: BLE001 - every reader failure is the same bad input for the user
        raise ClayInputError(f"cannot read label file {path}: {exc}") from exc
    if frame.crs is None:
        raise ClayInputError(f"label file {path} has no CRS: save it with one (e.g. EPSG:4326)")
    return frame.to_crs(4326)
