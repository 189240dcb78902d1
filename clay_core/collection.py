"""Many embedding files as one set of rows: what `clay similar`, `clay classify` and `clay cluster` search.

Memory is the point of this module. A search over 300k x 768 vectors used to hold the Arrow column, a numpy
copy of it and a unit-length copy (5x the vectors at peak). Here the files' row counts and widths are read
from the Parquet footers first, one float32 array is allocated for every row of every file, and the
`embeddings` column is decoded a batch at a time straight into it; the other (small) columns are read as an
Arrow table. Output is written a slice at a time from that array (`write_rows`), so the embeddings go back
bit for bit and no second full copy is ever made.

Rows keep their file: `source_file` (the file's name, or its path when two files share a name) is added to
the attributes, so chips with the same id in two files (two dates of one tile) stay apart in every output;
`FILE:ID` picks one of them on the command line.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clay_core.atomic import atomic_output
from clay_core.errors import ClayInputError
from clay_core.parquet import CLAY_KEY, EMBEDDINGS, GEO_KEY, GEOMETRY, bbox_of_wkb, check_writable
from clay_core.parquet_meta import json_key, row_shape_of
from clay_core.parsing import split_chip_ref

SOURCE_FILE = "source_file"
SUFFIXES = (".gpq", ".parquet", ".geoparquet")
# Rows decoded per batch: 16k x 768 float32 is 48 MB of Arrow buffers on top of the one big array.
READ_BATCH_ROWS = 16_384
# Without pre-buffering the reader fetches pages as it decodes them; with it (pyarrow's default) it holds a whole
# row group's column chunk and the allocator keeps the freed buffers: 300k x 768 peaked at 2.2x the vectors
# with it and 1.34x without (measured, benchmarks/similarity.py).
_READ_OPTIONS = {"pre_buffer": False, "buffer_size": 1 << 20}
WRITE_BATCH_ROWS = 16_384


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files from arguments that are files, folders (their *.gpq/*.parquet/*.geoparquet) or glob patterns,
    in the order given (folders and globs sorted), each file once.

    The results of earlier commands (see `is_derived_output`) are left out when embeddings files are given
    too: `clay similar out/*.gpq -o out/s.gpq` run twice (the shell expands the pattern, so the first run's
    matches arrive as a named file) must not search those matches as more chips. Results alone are searched."""
    found: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not matches:
                raise ClayInputError(f"folder {path} holds no embeddings files (*.gpq, *.parquet, *.geoparquet)")
        elif any(char in text for char in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
            if not matches:
                raise ClayInputError(
                    f"no file matches {text!r}: check the pattern (quote it so the shell does not expand it first)"
                )
        elif path.is_file():
            matches = [path]
        else:
            raise ClayInputError(f"embeddings file {path} does not exist")
        found.extend(matches)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    if not unique:
        raise ClayInputError("no embeddings files given")
    files = list(unique.values())
    if len(files) == 1:
        return files  # searched whatever it is: no footer read to tell results from inputs
    embeddings = [path for path in files if not is_derived_output(path)]
    return embeddings or files


def is_derived_output(path: Path) -> bool:
    """A file written by `clay similar/classify/cluster` (rows carry `source_file`) or `clay change` (no
    `embeddings` column), read from its footer only. Unreadable files count as inputs: reading them later
    gives the error that names the problem."""
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError):
        return False
    return SOURCE_FILE in names or EMBEDDINGS not in names


@dataclass
class FileInfo:
    path: Path
    rows: int
    width: int | None  # None until the first batch tells (plain list columns)
    clay: dict[str, Any]
    geo: dict[str, Any]
    columns: tuple[str, ...]  # every column name, from the footer read once


@dataclass
class EmbeddingCollection:
    """Every row of several embeddings files: vectors [N, D] float32 in one array, attributes in one table."""

    files: list[Path]
    vectors: np.ndarray  # [N, D] float32, each row as stored in its file
    table: pa.Table  # every column but `embeddings`, plus `source_file`
    offsets: np.ndarray  # [files + 1]: rows of file i are offsets[i]:offsets[i + 1]
    shape_per_row: tuple[int, ...]
    metadata: dict[str, Any]  # the first file's `clay` key
    geo: dict[str, Any]  # the first file's `geo` key

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def column(self, name: str) -> list[Any] | None:
        return self.table.column(name).to_pylist() if name in self.table.column_names else None

    @property
    def chip_ids(self) -> list[str]:
        ids = self.column("chip_id")
        return ids if ids is not None else [str(row - self.offsets[self.file_index(row)]) for row in range(len(self))]

    @property
    def source_files(self) -> list[str]:
        return self.table.column(SOURCE_FILE).to_pylist()

    @property
    def geometry_wkb(self) -> list[bytes]:
        column = self.geo.get("primary_column", GEOMETRY) if self.geo else GEOMETRY
        return self.table.column(column).to_pylist() if column in self.table.column_names else []

    def file_index(self, row: int) -> int:
        return int(np.searchsorted(self.offsets, row, side="right") - 1)

    def chip_id(self, row: int) -> str:
        if "chip_id" in self.table.column_names:
            return str(self.table.column("chip_id")[int(row)].as_py())
        return str(int(row) - int(self.offsets[self.file_index(int(row))]))

    def source_file(self, row: int) -> str:
        return str(self.table.column(SOURCE_FILE)[int(row)].as_py())

    def row_names(self, rows: Iterable[int]) -> list[str]:
        """Chip ids for people: plain with one file, FILE:ID with several (looked up per row, not for every row)."""
        if len(self.files) == 1:
            return [self.chip_id(row) for row in rows]
        return [f"{self.source_file(row)}:{self.chip_id(row)}" for row in rows]

    def patch_position(self, row: int) -> dict[str, list[int]]:
        """{"patch": [patch_row, patch_col]} for a row of a patch-exploded file (one chip id, many rows), else {}."""
        if not {"patch_row", "patch_col"} <= set(self.table.column_names):
            return {}
        return {"patch": [int(self.table.column(name)[int(row)].as_py()) for name in ("patch_row", "patch_col")]}

    def _rows_where(self, chip_id: str, source_file: str | None = None) -> np.ndarray:
        """Rows with this chip id (and file), found by Arrow compute: no Python string per row."""
        import pyarrow.compute as pc

        if "chip_id" in self.table.column_names:
            mask = pc.equal(self.table.column("chip_id"), pa.scalar(chip_id, pa.string()))
        else:  # files without ids: the row number within each file is the id
            ids = np.arange(len(self)) - np.repeat(self.offsets[:-1], np.diff(self.offsets))
            mask = pa.array(ids == int(chip_id)) if chip_id.isdigit() else pa.array(np.zeros(len(self), bool))
        if source_file is not None:
            mask = pc.and_(mask, pc.equal(self.table.column(SOURCE_FILE), pa.scalar(source_file, pa.string())))
        return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))

    def rows_of_ids(self, ids: Sequence[str], what: str) -> list[int]:
        """Rows for chip ids (every patch row of a chip in patch files). `FILE:ID` picks one file's chip; a
        plain id that is in several files is refused with the qualified names to use instead."""
        names = set(self.table.column(SOURCE_FILE).unique().to_pylist())
        rows: list[int] = []
        for chip_id in ids:
            file_name, plain_id = split_chip_ref(chip_id, names)
            found = np.zeros(0, dtype=np.int64) if file_name is None else self._rows_where(plain_id, file_name)
            if not len(found):
                found = self._rows_where(chip_id)
                if not len(found):
                    example = self.chip_id(0) if len(self) else "none"
                    raise ClayInputError(
                        f"{what} chip id {chip_id!r} is not in the embeddings (ids look like {example!r})"
                    )
                files = sorted({self.source_file(row) for row in found})
                if len(files) > 1:
                    raise ClayInputError(
                        f"{what} chip id {chip_id!r} is in {len(files)} files: name one as "
                        f"FILE:ID, e.g. {files[0]}:{chip_id}"
                    )
            rows.extend(int(row) for row in found)
        return rows


def _file_info(path: Path) -> FileInfo:
    try:
        parquet = pq.ParquetFile(path, **_READ_OPTIONS)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ClayInputError(f"{path} is not a readable Parquet file: {exc}") from exc
    schema = parquet.schema_arrow
    if EMBEDDINGS not in schema.names:
        raise ClayInputError(f"{path} has no 'embeddings' column; columns: {', '.join(schema.names)}")
    kind = schema.field(EMBEDDINGS).type
    if isinstance(kind, pa.ExtensionType):
        kind = kind.storage_type
    width = getattr(kind, "list_size", None)
    metadata = schema.metadata or {}
    return FileInfo(
        path=path,
        rows=parquet.metadata.num_rows,
        width=int(width) if width else None,
        clay=_json_key(metadata, CLAY_KEY, path),
        geo=_json_key(metadata, GEO_KEY, path),
        columns=tuple(schema.names),
    )


def _json_key(metadata: Mapping[bytes, bytes], key: bytes, path: Path) -> dict[str, Any]:
    try:
        return json_key(metadata, key)  # the one metadata JSON rule (parquet_meta); this adds the file's name
    except ClayInputError as exc:
        raise ClayInputError(f"{path}: {exc}") from None


def _first_width(path: Path) -> int:
    """Width of a plain-list embeddings column, from its first non-empty batch."""
    for batch in pq.ParquetFile(path, **_READ_OPTIONS).iter_batches(batch_size=64, columns=[EMBEDDINGS]):
        if batch.num_rows:
            return len(_batch_values(batch.column(0), path)) // batch.num_rows
    return 0


def _batch_values(column: pa.Array, path: Path) -> np.ndarray:
    """The flat float32 values of one batch of the embeddings column (no copy when already float32)."""
    if isinstance(column, pa.ExtensionArray):
        column = column.storage
    if column.null_count:
        raise ClayInputError(f"the embeddings column of {path} has empty (null) rows; the file is incomplete")
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)


def read_vectors_into(path: Path, out: np.ndarray) -> None:
    """Decode a file's embeddings a batch at a time into `out` ([rows, D], preallocated)."""
    start = 0
    for batch in pq.ParquetFile(path, **_READ_OPTIONS).iter_batches(batch_size=READ_BATCH_ROWS, columns=[EMBEDDINGS]):
        if batch.num_rows == 0:
            continue
        values = _batch_values(batch.column(0), path)
        if values.size != batch.num_rows * out.shape[1]:
            raise ClayInputError(
                f"embeddings rows of {path} have different lengths ({out.shape[1]} expected); "
                "not a Clay embeddings file"
            )
        out[start : start + batch.num_rows] = values.reshape(batch.num_rows, out.shape[1])
        start += batch.num_rows
    if start != len(out):
        raise ClayInputError(f"{path} has {start} embeddings rows but its footer says {len(out)}: the file is damaged")


def read_file_vectors(path: str | Path) -> np.ndarray:
    """One file's embeddings as [rows, D] float32, decoded a batch at a time into one array."""
    info = _file_info(Path(path))
    width = info.width if info.width is not None else _first_width(info.path)
    vectors = np.empty((info.rows, width), dtype=np.float32)
    read_vectors_into(info.path, vectors)
    return vectors


def _source_names(paths: Sequence[Path]) -> list[str]:
    names = [path.name for path in paths]
    return names if len(set(names)) == len(names) else [str(path) for path in paths]


def _check_same_model(infos: Sequence[FileInfo], widths: Sequence[int]) -> None:
    first = infos[0]
    for info, width in zip(infos[1:], widths[1:], strict=True):
        if width != widths[0]:
            raise ClayInputError(
                f"{info.path.name} has {width} values per row but {first.path.name} has "
                f"{widths[0]}: embed every file with the same model and level"
            )
        for key in ("model", "level", "checkpoint_sha256"):
            mine, theirs = info.clay.get(key), first.clay.get(key)
            if mine and theirs and mine != theirs:
                raise ClayInputError(
                    f"{info.path.name} was made with {key} {mine!r} but {first.path.name} with "
                    f"{theirs!r}: scores across models mean nothing; search one model's files"
                )


def read_collection(items: Iterable[str | Path]) -> EmbeddingCollection:
    """Every row of the files (see `expand_inputs`) with their vectors in one preallocated float32 array."""
    paths = expand_inputs(items)
    infos = [_file_info(path) for path in paths]
    widths = [info.width if info.width is not None else _first_width(info.path) for info in infos]
    _check_same_model(infos, widths)
    offsets = np.concatenate([[0], np.cumsum([info.rows for info in infos])]).astype(np.int64)
    vectors = np.empty((int(offsets[-1]), widths[0]), dtype=np.float32)
    tables = []
    for index, (info, name) in enumerate(zip(infos, _source_names(paths), strict=True)):
        read_vectors_into(info.path, vectors[offsets[index] : offsets[index + 1]])
        columns = [column for column in info.columns if column != EMBEDDINGS]
        table = pq.read_table(info.path, columns=columns, pre_buffer=False).replace_schema_metadata(None)
        table = table.drop_columns([SOURCE_FILE]) if SOURCE_FILE in table.column_names else table
        tables.append(table.append_column(SOURCE_FILE, pa.array([name] * table.num_rows, pa.string())))
    try:
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ClayInputError(
            f"the files' columns do not fit together ({exc}); search files written by the same tool"
        ) from exc
    clay = infos[0].clay
    shape = row_shape_of(clay, widths[0])
    return EmbeddingCollection(
        files=paths, vectors=vectors, table=table, offsets=offsets, shape_per_row=shape, metadata=clay, geo=infos[0].geo
    )


# ----------------------------------------------------------------------------------------------
# Writing chosen rows back, a slice at a time
# ----------------------------------------------------------------------------------------------


def output_geo(geo: Mapping[str, Any], wkb_values: Sequence[bytes]) -> dict[str, Any]:
    """The input's `geo` metadata with the geometry column's bbox set to the rows written."""
    written: dict[str, Any] = json.loads(json.dumps(geo))  # a deep copy: the input's stays as it is
    column = written.get("columns", {}).get(written.get("primary_column", GEOMETRY))
    if column is None:
        return written
    bbox = bbox_of_wkb(wkb_values) if len(wkb_values) else None
    if bbox:
        column["bbox"] = bbox
    else:
        column.pop("bbox", None)
    return written


def write_rows(
    path: str | Path,
    collection: EmbeddingCollection,
    rows: np.ndarray,
    extra: Mapping[str, pa.Array | np.ndarray],
    *,
    overwrite: bool = False,
    metadata_update: Mapping[str, Any] | None = None,
) -> Path:
    """Write `rows` (in the order given) with their attributes, their embeddings (bit for bit) right after
    `date` as in the input, and `extra` columns (one value per written row). Temp file + rename."""
    path = Path(path)
    check_writable(path, overwrite)
    rows = np.asarray(rows, dtype=np.int64)
    attributes = collection.table.take(pa.array(rows, pa.int64()))
    for name, values in extra.items():
        array = values if isinstance(values, pa.Array) else pa.array(np.asarray(values))
        attributes = attributes.append_column(name, array)
    position = attributes.column_names.index("date") + 1 if "date" in attributes.column_names else 0
    embedding_type = pa.list_(pa.float32(), collection.dim)
    schema = attributes.schema.insert(position, pa.field(EMBEDDINGS, embedding_type))
    metadata: dict[bytes, bytes] = {}
    if collection.geo:
        primary = collection.geo.get("primary_column", GEOMETRY)
        wkb = attributes.column(primary).to_pylist() if primary in attributes.column_names else []
        metadata[GEO_KEY] = json.dumps(output_geo(collection.geo, wkb)).encode()
    if collection.metadata or metadata_update:
        clay = dict(collection.metadata)
        clay.update(metadata_update or {})
        metadata[CLAY_KEY] = json.dumps(clay, default=str).encode()
    schema = schema.with_metadata(metadata)
    with (
        atomic_output(path, overwrite=overwrite) as temporary,
        pq.ParquetWriter(temporary, schema, compression="zstd") as writer,
    ):
        for start in range(0, max(len(rows), 1), WRITE_BATCH_ROWS):
            part = rows[start : start + WRITE_BATCH_ROWS]
            flat = pa.array(collection.vectors[part].reshape(-1), pa.float32())
            embeddings = pa.FixedSizeListArray.from_arrays(flat, collection.dim)
            piece = attributes.slice(start, len(part)).add_column(position, EMBEDDINGS, embeddings)
            writer.write_table(piece.replace_schema_metadata(metadata))
    return path
