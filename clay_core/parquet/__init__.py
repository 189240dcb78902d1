"""GeoParquet embeddings files: the reader (numpy + pyarrow, used in-process by QGIS) and the writer.

Layout (DESIGN.md "GeoParquet output", spec/clay.md section 4). The first four columns are exactly what
Clay v0 wrote, so tools made for Clay's published embeddings read our files:

    source_url  string          chip file / scene the pixels came from: absolute path or URL, no credentials
    date        date32          acquisition date
    embeddings  fixed_size_list<float32>[D]   one row's embedding flattened in (g, h, w, d) / (h, w, d) order
    geometry    binary (WKB)    5-point polygon of the 4 UTM corners transformed to OGC:CRS84 (lon, lat)

and then ours: chip_id, mgrs, epsg, utm_bbox (native footprint, 4 x float64), row, col, nodata_fraction,
filled_bands, bbox (the GeoParquet 1.1 covering struct: xmin, ymin, xmax, ymax), and patch_row, patch_col
when patch embeddings are written one row per patch; `satclip`, float64 fixed-size list, when the job adds
the SatCLIP location embedding of each chip's centre.
The `geo` key holds GeoParquet 1.1.0 metadata (CRS84 PROJJSON, the bbox covering column; 1.0.0 readers
ignore the covering); the `clay` key holds JSON about the model and the run. Files are ZSTD-compressed and
written to a temporary file that is then renamed.

`clay_core.parquet.reader` needs only numpy and pyarrow; `clay_core.parquet.writer` adds pyproj (lazily,
for the CRS84 corners). Every public name of both stays importable from `clay_core.parquet`.
"""

from clay_core.parquet.reader import (
    BBOX,
    BBOX_FIELDS,
    CLAY_KEY,
    EMBEDDINGS,
    GEO_KEY,
    GEOMETRY,
    GEOPARQUET_VERSION,
    SATCLIP,
    V0_COLUMNS,
    EmbeddingTable,
    read_embeddings,
    read_metadata,
)
from clay_core.parquet.writer import (
    ROW_GROUP_BYTES,
    ChipLike,
    bbox_array,
    bbox_of_table,
    bbox_of_wkb,
    check_writable,
    chips_schema,
    chips_table,
    crs84_projjson,
    embeddings_array,
    file_metadata,
    geo_metadata,
    output_name,
    rings_to_wkb,
    rows_per_group,
    union_bbox,
    utm_boxes_to_crs84,
    wkb_polygon_rings,
    write_geoparquet,
    write_table_atomic,
)
from clay_core.parquet_meta import geometry_crs, json_key, row_shape_of

__all__ = [
    "BBOX",
    "BBOX_FIELDS",
    "CLAY_KEY",
    "EMBEDDINGS",
    "GEO_KEY",
    "GEOMETRY",
    "GEOPARQUET_VERSION",
    "ROW_GROUP_BYTES",
    "SATCLIP",
    "V0_COLUMNS",
    "ChipLike",
    "EmbeddingTable",
    "bbox_array",
    "bbox_of_table",
    "bbox_of_wkb",
    "check_writable",
    "chips_schema",
    "chips_table",
    "crs84_projjson",
    "embeddings_array",
    "file_metadata",
    "geo_metadata",
    "geometry_crs",
    "json_key",
    "output_name",
    "read_embeddings",
    "read_metadata",
    "rings_to_wkb",
    "row_shape_of",
    "rows_per_group",
    "union_bbox",
    "utm_boxes_to_crs84",
    "wkb_polygon_rings",
    "write_geoparquet",
    "write_table_atomic",
]
