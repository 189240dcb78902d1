"""Embeddings -> QGIS layers: features from the vector cache, memory layers tagged with their file, the fid of
each file row in a layer, and the scores a search writes into it.

Why memory layers: Debian's GDAL (and several QGIS builds) has no Parquet driver, and WKB -> memory layer was
the fastest path measured (98 ms for 10k polygons with pyarrow). Only scalar attributes go into QGIS; the
vectors stay in clay_qgis.vector_cache.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qgis.core import QgsFeature, QgsFeatureRequest, QgsField, QgsFields, QgsGeometry, QgsVectorLayer
from qgis.PyQt.QtCore import QDate

from clay_core.errors import ClayInputError
from clay_qgis import compat
from clay_qgis.schema import EXAMPLE, RANK, SCORE_FIELDS, SIMILARITY, SOURCE_FILE, layer_fields
from clay_qgis.style import style_chip_grid
from clay_qgis.vector_cache import EmbeddingSet, load_embedding_set

PATH_PROPERTY = "clay/embeddings_path"
MODE_PROPERTY = "clay/mode"
POLYGON_WKB_TYPE = compat.WKB_POLYGON


def qdate(value: Any) -> QDate | None:
    if isinstance(value, datetime.date):
        return QDate(value.year, value.month, value.day)
    return None


def features_for(
    embedding_set: EmbeddingSet,
    fields: QgsFields,
    rows: np.ndarray | Sequence[int] | None = None,
    values: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
) -> list[QgsFeature]:
    """QgsFeatures for `rows` of one file (default: all, in the order given): the polygon, the file's scalar
    columns, and `values` (field name -> one value per given row, e.g. scores); other fields are null.

    Built column by column (one list per field, numpy where the values are arrays), then one pass over the
    rows: per row only the QgsFeature, its geometry and one setAttributes call remain."""
    order = (np.arange(len(embedding_set)) if rows is None else np.asarray(rows, dtype=np.int64)).tolist()
    columns = [_column(embedding_set, name, order, values or {}) for name in fields.names()]
    wkb = embedding_set.wkb
    features = []
    for row, attributes in zip(order, zip(*columns, strict=True) if columns else ([] for _ in order), strict=True):
        feature = QgsFeature(fields)
        geometry = QgsGeometry()
        geometry.fromWkb(wkb[row])
        feature.setGeometry(geometry)
        feature.setAttributes(list(attributes))
        features.append(feature)
    return features


def _column(embedding_set: EmbeddingSet, name: str, order: list[int], values: Mapping[str, Any]) -> list[Any]:
    """One field's values for the rows in `order`."""
    if name in values:
        given = values[name]
        column = given.tolist() if isinstance(given, np.ndarray) else list(given)
        if len(column) != len(order):
            raise ValueError(f"{len(column)} values for field {name!r}, {len(order)} rows")
        return column
    source = embedding_set.columns.get(name)
    if source is None:
        return [None] * len(order)
    picked = [source[row] for row in order]
    if name == "date":  # a file holds few distinct dates: one QDate each
        dates = {value: qdate(value) for value in set(picked)}
        return [dates[value] for value in picked]
    return picked


def features_across(
    embedding_sets: Sequence[EmbeddingSet],
    offsets: np.ndarray,
    fields: QgsFields,
    rows: np.ndarray | Sequence[int],
    values: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
) -> list[QgsFeature]:
    """QgsFeatures for rows numbered across several files (file i holds rows offsets[i] to offsets[i + 1]), in
    the order given; `values` as for features_for (one per given row); SOURCE_FILE, when `fields` has it, names
    each row's file. One features_for call per file."""
    rows = np.asarray(rows, dtype=np.int64)
    which = np.searchsorted(offsets, rows, side="right") - 1
    given = {
        name: column if isinstance(column, np.ndarray) else np.array(column, dtype=object)
        for name, column in (values or {}).items()
    }
    out: list[Any] = [None] * len(rows)  # every position gets one file's feature
    for index, embedding_set in enumerate(embedding_sets):
        positions = np.flatnonzero(which == index)
        if not positions.size:
            continue
        local: dict[str, Any] = {name: column[positions] for name, column in given.items()}
        if fields.indexOf(SOURCE_FILE) >= 0:
            local[SOURCE_FILE] = [embedding_set.path.name] * positions.size
        features = features_for(embedding_set, fields, rows[positions] - int(offsets[index]), local)
        for position, feature in zip(positions.tolist(), features, strict=True):
            out[position] = feature
    return out


def score_values(
    rows: np.ndarray | Sequence[int],
    scores: np.ndarray,
    ranks: np.ndarray,
    examples: Mapping[int, str],
    score_field: str = SIMILARITY,
) -> dict[str, Any]:
    """The score fields of `rows` (for features_for / features_across): the score in `score_field` (similarity,
    or e.g. the classifier's probability, leaving similarity null), the rank, and the example role."""
    rows = np.asarray(rows, dtype=np.int64)
    return {
        score_field: np.asarray(scores, dtype=np.float64)[rows],
        RANK: np.asarray(ranks, dtype=np.int64)[rows],
        EXAMPLE: [examples.get(row) for row in rows.tolist()],
    }


def tag_layer(layer: QgsVectorLayer, embedding_set: EmbeddingSet) -> None:
    """Remember which file (and view) a layer shows, so the map tool and dock find its vectors."""
    layer.setCustomProperty(PATH_PROPERTY, str(embedding_set.path))
    layer.setCustomProperty(MODE_PROPERTY, embedding_set.mode)


def memory_layer(embedding_set: EmbeddingSet, name: str | None = None) -> QgsVectorLayer:
    """A memory layer with one polygon per chip (or patch); vectors stay in the cache."""
    layer = QgsVectorLayer("Polygon", name or embedding_set.path.stem, "memory")
    layer.setCrs(embedding_set.crs)
    provider = layer.dataProvider()
    fields = layer_fields(embedding_set.mode)
    provider.addAttributes(fields.toList())
    layer.updateFields()
    ok, added = provider.addFeatures(features_for(embedding_set, layer.fields()))
    if not ok:
        raise ClayInputError(f"QGIS refused the features of {embedding_set.path}")
    # Memory layers have no spatial index by default: without one the map tool's "chip under the cursor"
    # rectangle filter scans every feature on each click.
    provider.createSpatialIndex()
    layer.updateExtents()
    tag_layer(layer, embedding_set)
    _remember_row_fids(layer, np.array([f.id() for f in added], dtype=np.int64))
    style_chip_grid(layer)
    return layer


def load_layer(path: str | Path, mode: str = "chips", name: str | None = None) -> QgsVectorLayer:
    return memory_layer(load_embedding_set(path, mode), name)


def embedding_set_of(layer: QgsVectorLayer) -> EmbeddingSet | None:
    """The cached vectors behind a layer made by this plugin (None for any other layer)."""
    path = layer.customProperty(PATH_PROPERTY) if layer is not None else None
    if not path:
        return None
    return load_embedding_set(path, layer.customProperty(MODE_PROPERTY) or "chips")


# fid of each file row in a layer (layer id -> (feature count, fids)): kept for layers we built, rebuilt from
# attributes for others. Entries go when the project removes the layer, so a long session does not keep an
# [N] array per layer it ever showed.
_ROW_FIDS: dict[str, tuple[int, np.ndarray]] = {}
_WATCHING_PROJECT = False


def forget_layers(layer_ids) -> None:
    for layer_id in layer_ids:
        _ROW_FIDS.pop(layer_id, None)


def _remember_row_fids(layer: QgsVectorLayer, fids: np.ndarray) -> None:
    global _WATCHING_PROJECT
    if not _WATCHING_PROJECT:
        from qgis.core import QgsProject

        QgsProject.instance().layersWillBeRemoved.connect(forget_layers)  # the list-of-ids overload
        _WATCHING_PROJECT = True
    _ROW_FIDS[layer.id()] = (layer.featureCount(), fids)


def row_fids(layer: QgsVectorLayer, embedding_set: EmbeddingSet) -> np.ndarray:
    """[N] fid per file row (-1 where the layer lacks that row, e.g. a layer of the top matches only)."""
    cached = _ROW_FIDS.get(layer.id())
    if cached is not None and cached[0] == layer.featureCount() and len(cached[1]) == len(embedding_set):
        return cached[1]
    fids = np.full(len(embedding_set), -1, dtype=np.int64)
    key_fields = ["chip_id"] + (["patch_row", "patch_col"] if embedding_set.mode == "patches" else [])
    missing = [name for name in key_fields if layer.fields().indexOf(name) < 0]
    if missing:
        raise ClayInputError(
            f"layer {layer.name()!r} has no {', '.join(missing)} field: it was not made from an embeddings file"
        )
    request = (
        QgsFeatureRequest()
        .setFlags(QgsFeatureRequest.Flag.NoGeometry)
        .setSubsetOfAttributes(key_fields, layer.fields())
    )
    for feature in layer.getFeatures(request):
        row = embedding_set.row_of_key(tuple(feature[name] for name in key_fields))
        if row is not None:
            fids[row] = feature.id()
    _remember_row_fids(layer, fids)
    return fids


def row_of_feature(layer: QgsVectorLayer, embedding_set: EmbeddingSet, fid: int) -> int | None:
    fids = row_fids(layer, embedding_set)
    hits = np.flatnonzero(fids == fid)
    return int(hits[0]) if hits.size else None


def ensure_score_fields(layer: QgsVectorLayer) -> tuple[int, int, int]:
    missing = [QgsField(name, kind) for name, kind in SCORE_FIELDS if layer.fields().indexOf(name) < 0]
    if missing:
        if not layer.dataProvider().addAttributes(missing):
            raise ClayInputError(f"cannot add score fields to layer {layer.name()!r} (read-only source?)")
        layer.updateFields()
    return tuple(layer.fields().indexOf(name) for name, _ in SCORE_FIELDS)


def write_scores(
    layer: QgsVectorLayer,
    fids: np.ndarray,
    scores: np.ndarray,
    ranks: np.ndarray,
    examples: dict[int, str],
    score_field: str = SIMILARITY,
) -> None:
    """Put similarity/rank/example into the layer in one provider call (fast on memory layers).

    Measured for 100k features: ~0.3 s CPU, of which ~2/3 is PyQt converting the {fid: {field: value}}
    dict to C++ and ~1/3 the memory provider; there is no bulk API that takes arrays, so the Python side
    only avoids extra work per feature (lists from numpy in one go, examples patched in afterwards)."""
    sim_index, rank_index, example_index = ensure_score_fields(layer)
    if score_field != SIMILARITY:  # e.g. the classifier's probability: its own field, added on first use
        if layer.fields().indexOf(score_field) < 0:
            layer.dataProvider().addAttributes([QgsField(score_field, compat.DOUBLE)])
            layer.updateFields()
        sim_index = layer.fields().indexOf(score_field)
    present = np.flatnonzero(fids >= 0)
    changes = {
        fid: {sim_index: score, rank_index: rank, example_index: None}
        for fid, score, rank in zip(
            fids[present].tolist(),
            np.asarray(scores, dtype=np.float64)[present].tolist(),
            np.asarray(ranks)[present].tolist(),
            strict=True,
        )
    }
    for row, role in examples.items():
        if 0 <= row < len(fids) and fids[row] >= 0:
            changes[int(fids[row])][example_index] = role
    if not layer.dataProvider().changeAttributeValues(changes):
        raise ClayInputError(f"QGIS could not store the scores in layer {layer.name()!r}")
