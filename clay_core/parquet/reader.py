"""Reading embeddings GeoParquet files: numpy + pyarrow only (the QGIS side calls this in-process when
pyarrow is importable; see clay_qgis/readers.py for the other ways in).

The column layout and the two metadata keys are described in clay_core/parquet/__init__.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clay_core.errors import ClayInputError
from clay_core.parquet_meta import CLAY_KEY, GEO_KEY, GEOMETRY, geometry_crs, json_key, row_shape_of

# 1.1.0 (a superset of the 1.0.0 Clay wrote) for the bbox covering column: with it, readers can skip
# row groups by extent and the validator's distribution tests pass; 1.0.0 readers ignore it.
GEOPARQUET_VERSION = "1.1.0"
EMBEDDINGS = "embeddings"
BBOX = "bbox"
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
# Opt-in SatCLIP column: float64, the precision SatCLIP computes in (its parity tolerance is 1e-9 and
# its vectors are used as regression predictors); at 2 KiB per row it is small next to the embeddings.
SATCLIP = "satclip"
V0_COLUMNS = ("source_url", "date", EMBEDDINGS, GEOMETRY)


@dataclass
class EmbeddingTable:
    """An embeddings file in memory: attributes without the big column, and the vectors as one array."""

    table: pa.Table  # every column except `embeddings`
    vectors: np.ndarray  # [N, D] float32, each row flattened
    shape_per_row: tuple[int, ...]
    metadata: dict[str, Any]  # the `clay` key ({} for files written by other tools)
    crs: Any  # PROJJSON dict (or string) of the geometry column; "OGC:CRS84" when `geo` omits it
    geo: dict[str, Any]

    @property
    def geometry_wkb(self) -> list[bytes]:
        column = self.geo.get("primary_column", GEOMETRY) if self.geo else GEOMETRY
        return self.table.column(column).to_pylist() if column in self.table.column_names else []

    @property
    def chip_ids(self) -> list[str]:
        return self.table.column("chip_id").to_pylist() if "chip_id" in self.table.column_names else []

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def list_column(self, name: str) -> np.ndarray | None:
        """A fixed-size list column as [N, K] (e.g. `satclip`, float64), or None when the file lacks it."""
        if name not in self.table.column_names:
            return None
        column = self.table.column(name)
        width = getattr(column.type, "list_size", None)
        if not width:
            raise ClayInputError(f"column {name!r} is not a fixed-size list column ({column.type})")
        values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return values.reshape(column.length(), width)

    @property
    def satclip(self) -> np.ndarray | None:
        """SatCLIP embeddings of the chip centres [N, 256] float64, when the job added them."""
        return self.list_column(SATCLIP)

    def reshaped(self) -> np.ndarray:
        """The vectors as [N, *shape_per_row] (e.g. (N, 16, 16, 768) for patch level)."""
        return self.vectors.reshape((len(self), *self.shape_per_row))


def read_embeddings(path: str | Path, columns: Sequence[str] | None = None) -> EmbeddingTable:
    """Read an embeddings GeoParquet file (ours or Clay v0's) into vectors + attributes."""
    path = Path(path)
    if not path.is_file():
        raise ClayInputError(f"embeddings file {path} does not exist")
    try:
        schema = pq.read_schema(path)
        wanted = [name for name in (list(columns) if columns else schema.names) if name != EMBEDDINGS]
        rest = pq.read_table(path, columns=wanted, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ClayInputError(f"{path} is not a readable Parquet file: {exc}") from exc
    if EMBEDDINGS not in schema.names:
        raise ClayInputError(f"{path} has no 'embeddings' column; columns: {', '.join(schema.names)}")
    schema_meta = schema.metadata or {}
    clay = json_key(schema_meta, CLAY_KEY)
    geo = json_key(schema_meta, GEO_KEY)
    # The vectors a batch at a time into one float32 array (clay_core.collection): the whole column as Arrow
    # plus a numpy copy of it held the vectors twice (1M x 768: 6 GB instead of 3 GB).
    from clay_core.collection import read_file_vectors

    vectors = read_file_vectors(path)
    return EmbeddingTable(
        table=rest,
        vectors=vectors,
        shape_per_row=row_shape_of(clay, vectors.shape[1]),
        metadata=clay,
        crs=geometry_crs(geo),
        geo=geo,
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The `clay` metadata of a file without reading its rows."""
    return json_key(pq.read_schema(path).metadata, CLAY_KEY)
