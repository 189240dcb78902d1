"""Embeddings GeoParquet -> QGIS memory layers, the in-memory vector cache, and similarity styling.

Why memory layers: Debian's GDAL (and several QGIS builds) has no Parquet driver, and WKB -> memory layer was
the fastest path measured (98 ms for 10k polygons with pyarrow). The file is read by clay_qgis.readers
(pyarrow, GDAL's Parquet driver or the Clay runtime's layer cache, whichever this QGIS has). Only scalar
attributes go into QGIS; the embedding vectors stay in a numpy cache keyed by the file (path, mtime,
size), so scoring every chip on a click is one matrix-vector product and never touches QGIS attributes.
"""

from __future__ import annotations

import collections
import datetime
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDefaultVectorLayerLegend,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsGraduatedSymbolRenderer,
    QgsMapLayerLegend,
    QgsMarkerSymbol,
    QgsProperty,
    QgsRendererRange,
    QgsSimpleFillSymbolLayer,
    QgsSimpleLegendNode,
    QgsSymbolLayer,
    QgsVectorLayer,
)
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QDate, QRectF, Qt
from qgis.PyQt.QtGui import QColor, QIcon, QPainter, QPixmap, QTextOption

from clay_core.errors import ClayInputError
from clay_core.layer_cache import LayerRows
from clay_core.similarity import (
    Scored,
    SimilarityIndex,
    check_dimension,
    explode_patch_rings,
    explode_patch_vectors,
    exterior_rings,
    patch_grid_shape,
    patch_rings_crs84,
)
from clay_core.similarity import ranks as ranks_of
from clay_core.wkb import polygons_from_rings
from clay_qgis import compat
from clay_qgis.readers import read_layer_rows

MODES = ("chips", "patches")
PATH_PROPERTY = "clay/embeddings_path"
MODE_PROPERTY = "clay/mode"
SIMILARITY, RANK, EXAMPLE = "similarity", "rank", "example"
POLYGON_WKB_TYPE = compat.WKB_POLYGON
POSITIVE, NEGATIVE = "positive", "negative"
CACHE_SIZE = 2  # a 1M x 768 file is 3 GB of vectors: keep few

# viridis sampled at 10 evenly spaced points (matplotlib's values): perceptually uniform, readable in grey
VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725")
TOP_K_COLOR = "#ff2d55"  # outline of the best matches: a red that viridis never uses
POSITIVE_COLOR = "#ffffff"  # query/positive examples: white outline + star, readable on dark and yellow
NEGATIVE_COLOR = "#000000"
FILL_ALPHA = 205  # the imagery stays faintly visible under the scores

# Scalar attribute columns copied into QGIS (name -> field type); vectors never are.
CHIP_FIELDS = (
    ("chip_id", compat.STRING),
    ("date", compat.DATE),
    ("source_url", compat.STRING),
    ("row", compat.INT),
    ("col", compat.INT),
    ("nodata_fraction", compat.DOUBLE),
)
PATCH_FIELDS = (("patch_row", compat.INT), ("patch_col", compat.INT))
SCORE_FIELDS = ((SIMILARITY, compat.DOUBLE), (RANK, compat.INT), (EXAMPLE, compat.STRING))


# ----------------------------------------------------------------------------------------------
# The vector cache
# ----------------------------------------------------------------------------------------------


@dataclass
class EmbeddingSet:
    """One embeddings file as the plugin uses it: unit vectors, scalar columns and geometry per row."""

    path: Path
    mode: str  # "chips" or "patches"
    index: SimilarityIndex
    columns: dict[str, list[Any]]  # scalar attributes per row (CHIP_FIELDS [+ PATCH_FIELDS])
    wkb: list[bytes]
    crs: QgsCoordinateReferenceSystem
    metadata: dict[str, Any]
    shape_per_row: tuple[int, ...]
    reader: str = ""  # how the file was read (clay_qgis.readers: pyarrow, GDAL, the Clay runtime's cache)
    # The background thread building the similarity sketch (large files only; see score_query).
    sketch_build: threading.Thread | None = field(default=None, repr=False)
    _rows_by_key: dict[tuple, int] | None = field(default=None, repr=False)
    _rings: list[np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def dim(self) -> int:
        return self.index.dim

    @property
    def model_name(self) -> str:
        return str(self.metadata.get("model") or self.metadata.get("model_name") or "unknown model")

    @property
    def level(self) -> str:
        return str(self.metadata.get("level", "?"))

    def key(self, row: int) -> tuple:
        if self.mode == "patches":
            return (self.columns["chip_id"][row], self.columns["patch_row"][row], self.columns["patch_col"][row])
        return (self.columns["chip_id"][row],)

    def row_of_key(self, key: tuple) -> int | None:
        if self._rows_by_key is None:
            self._rows_by_key = {self.key(row): row for row in range(len(self))}
        return self._rows_by_key.get(tuple(key))

    @property
    def rings(self) -> list[np.ndarray]:
        """Exterior rings in the layer CRS, parsed once: used to find the chip under a point."""
        if self._rings is None:
            self._rings = exterior_rings(self.wkb)
        return self._rings

    def rows_of_chip(self, chip_id: str) -> list[int]:
        return [row for row, value in enumerate(self.columns["chip_id"]) if value == chip_id]

    def describe(self) -> str:
        return (
            f"{self.model_name}, level {self.level}, {self.dim} values per "
            f"{'patch' if self.mode == 'patches' else 'chip'}, {len(self)} rows"
        )


_CACHE: collections.OrderedDict[tuple, EmbeddingSet] = collections.OrderedDict()


def cache_key(path: str | Path, mode: str) -> tuple:
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError:
        raise ClayInputError(f"embeddings file {path} does not exist") from None
    return (str(path), stat.st_mtime_ns, stat.st_size, mode)


def load_embedding_set(path: str | Path, mode: str = "chips", feedback=None) -> EmbeddingSet:
    """The file's vectors and attributes, from the cache when the file has not changed since. `feedback`
    (a QgsProcessingFeedback) hears about a first conversion through the Clay runtime."""
    if mode not in MODES:
        raise ClayInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    key = cache_key(path, mode)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    embedding_set = _read_embedding_set(Path(key[0]), mode, feedback)
    _CACHE[key] = embedding_set
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return embedding_set


def clear_cache() -> None:
    _CACHE.clear()


def _patch_rings(data: LayerRows, h: int, w: int) -> np.ndarray:
    """Patch polygons by the writer's own rule (exact UTM patch corners to CRS84) when the file has the native
    footprint; files from other tools only have the chip polygon, so interpolate inside it."""
    epsg = data.columns.get("epsg")
    if data.utm_bbox is not None and epsg is not None and None not in epsg:
        return patch_rings_crs84(data.utm_bbox, np.asarray(epsg), h, w)
    return explode_patch_rings(exterior_rings(data.wkb), h, w)


def _read_embedding_set(path: Path, mode: str, feedback=None) -> EmbeddingSet:
    data, reader = read_layer_rows(path, feedback)
    n = len(data)
    columns = {name: data.columns.get(name, [None] * n) for name, _ in CHIP_FIELDS}
    if not any(columns["chip_id"]):
        columns["chip_id"] = [str(row) for row in range(n)]  # files from other tools: the row is the id
    wkb = data.wkb
    vectors = data.vectors
    already_exploded = "patch_row" in data.columns
    if already_exploded:
        columns.update({name: data.columns.get(name, [None] * n) for name, _ in PATCH_FIELDS})
    if mode == "patches" and not already_exploded:
        h, w = patch_grid_shape(data.shape_per_row)
        vectors = explode_patch_vectors(vectors, data.shape_per_row)
        wkb = polygons_from_rings(_patch_rings(data, h, w))
        columns = {name: [value for value in values for _ in range(h * w)] for name, values in columns.items()}
        grid_rows, grid_cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        columns["patch_row"] = np.tile(grid_rows.ravel(), n).tolist()
        columns["patch_col"] = np.tile(grid_cols.ravel(), n).tolist()
    effective_mode = "patches" if (mode == "patches" or already_exploded) else "chips"
    return EmbeddingSet(
        path=path,
        mode=effective_mode,
        index=SimilarityIndex(vectors),
        columns=columns,
        wkb=wkb,
        crs=crs_from_geo(data.crs),
        metadata=data.metadata,
        shape_per_row=data.shape_per_row,
        reader=reader,
    )


def crs_from_geo(crs: Any) -> QgsCoordinateReferenceSystem:
    """The layer CRS from the GeoParquet `geo` CRS (PROJJSON, a string, or absent = OGC:CRS84)."""
    if (
        crs is None
        or crs == "OGC:CRS84"
        or (isinstance(crs, dict) and crs.get("id") == {"authority": "OGC", "code": "CRS84"})
    ):
        # CRS84 is lon/lat like QGIS's EPSG:4326 layers (QGIS always uses x = lon); EPSG:4326 is
        # what every QGIS project and transform knows best.
        return QgsCoordinateReferenceSystem("EPSG:4326")
    result = QgsCoordinateReferenceSystem()
    text = json.dumps(crs) if isinstance(crs, dict) else str(crs)
    if not result.createFromUserInput(text) or not result.isValid():
        raise ClayInputError(
            "the embeddings file's CRS (geo metadata) is not understood by QGIS/PROJ; "
            "rewrite the file with OGC:CRS84 geometry"
        )
    return result


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------


def layer_fields(mode: str) -> QgsFields:
    fields = QgsFields()
    for name, kind in CHIP_FIELDS + (PATCH_FIELDS if mode == "patches" else ()) + SCORE_FIELDS:
        fields.append(QgsField(name, kind))
    return fields


def _qdate(value: Any) -> QDate | None:
    if isinstance(value, datetime.date):
        return QDate(value.year, value.month, value.day)
    return None


def features_for(
    embedding_set: EmbeddingSet,
    fields: QgsFields,
    rows: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    ranks: np.ndarray | None = None,
    examples: dict[int, str] | None = None,
) -> list[QgsFeature]:
    """QgsFeatures for `rows` (default: all) with scalar attributes and optional scores."""
    rows = np.arange(len(embedding_set)) if rows is None else np.asarray(rows)
    names = [fields.at(i).name() for i in range(fields.count())]
    columns = embedding_set.columns
    features = []
    for row in rows.tolist():
        feature = QgsFeature(fields)
        geometry = QgsGeometry()
        geometry.fromWkb(embedding_set.wkb[row])
        feature.setGeometry(geometry)
        values = []
        for name in names:
            if name == "date":
                values.append(_qdate(columns["date"][row]))
            elif name == SIMILARITY:
                values.append(None if scores is None else float(scores[row]))
            elif name == RANK:
                values.append(None if ranks is None else int(ranks[row]))
            elif name == EXAMPLE:
                values.append((examples or {}).get(row))
            else:
                values.append(columns[name][row] if name in columns else None)
        feature.setAttributes(values)
        features.append(feature)
    return features


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
    return tuple(layer.fields().indexOf(name) for name, _ in SCORE_FIELDS)  # type: ignore[return-value]


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


# ----------------------------------------------------------------------------------------------
# Styling
# ----------------------------------------------------------------------------------------------


def viridis_ramp() -> QgsGradientColorRamp:
    stops = [QgsGradientStop(i / (len(VIRIDIS) - 1), QColor(color)) for i, color in enumerate(VIRIDIS[1:-1], 1)]
    return QgsGradientColorRamp(QColor(VIRIDIS[0]), QColor(VIRIDIS[-1]), False, stops)


def _property(name: str) -> int:
    """QgsSymbolLayer property keys across QGIS versions (3.22 names vs the scoped names of 3.30+)."""
    scoped = getattr(QgsSymbolLayer, "Property", None)
    for candidate in (name, "Property" + name):
        if scoped is not None and hasattr(scoped, candidate):
            return getattr(scoped, candidate)
    return getattr(QgsSymbolLayer, "Property" + name)


def _highlight_condition(top_k: int) -> str:
    top = f' OR "{RANK}" <= {int(top_k)}' if top_k > 0 else ""
    return f'"{EXAMPLE}" IS NOT NULL{top}'


TRANSPARENT = "0,0,0,0"


def class_symbol(fill: QColor, top_k: int) -> QgsFillSymbol:
    """Fill in the class colour; outline only for the top k (red) and the examples (white/black);
    a star at the centre of each positive example, a cross on each negative one.

    The outline and marker layers get transparent static colours and their real colours from data-defined
    properties: legend swatches ignore the data-defined "enabled" switch and draw static colours only, so
    otherwise every class swatch in the Layers panel would show a red frame and a star."""
    fill = QColor(fill)
    fill.setAlpha(FILL_ALPHA)
    symbol = QgsFillSymbol.createSimple(
        {"color": fill.name(QColor.NameFormat.HexArgb), "outline_style": "no", "style": "solid"}
    )
    symbol.symbolLayer(0).setColor(fill)
    outline = QgsSimpleFillSymbolLayer.create(
        {"style": "no", "outline_color": TRANSPARENT, "outline_width": "0.7", "outline_width_unit": "MM"}
    )
    outline.setDataDefinedProperty(_property("LayerEnabled"), QgsProperty.fromExpression(_highlight_condition(top_k)))
    outline.setDataDefinedProperty(
        _property("StrokeColor"),
        QgsProperty.fromExpression(
            f"CASE WHEN \"{EXAMPLE}\" = '{POSITIVE}' THEN '{POSITIVE_COLOR}' "
            f"WHEN \"{EXAMPLE}\" = '{NEGATIVE}' THEN '{NEGATIVE_COLOR}' ELSE '{TOP_K_COLOR}' END"
        ),
    )
    outline.setDataDefinedProperty(
        _property("StrokeWidth"), QgsProperty.fromExpression(f'CASE WHEN "{EXAMPLE}" IS NOT NULL THEN 1.0 ELSE 0.7 END')
    )
    symbol.appendSymbolLayer(outline)
    symbol.appendSymbolLayer(_example_marker_layer())
    return symbol


def _example_marker_layer():
    from qgis.core import QgsCentroidFillSymbolLayer

    marker = QgsMarkerSymbol.createSimple(
        {"name": "star", "size": "5", "color": TRANSPARENT, "outline_color": TRANSPARENT, "outline_width": "0.4"}
    )
    marker.symbolLayer(0).setDataDefinedProperty(
        _property("Name"),
        QgsProperty.fromExpression(f"CASE WHEN \"{EXAMPLE}\" = '{NEGATIVE}' THEN 'cross2' ELSE 'star' END"),
    )
    marker.symbolLayer(0).setDataDefinedProperty(
        _property("FillColor"),
        QgsProperty.fromExpression(
            f"CASE WHEN \"{EXAMPLE}\" = '{NEGATIVE}' THEN '{NEGATIVE_COLOR}' ELSE '{POSITIVE_COLOR}' END"
        ),
    )
    # An expression on a field, not a constant: without a feature (legend swatches) it falls back to transparent.
    marker.symbolLayer(0).setDataDefinedProperty(
        _property("StrokeColor"), QgsProperty.fromExpression(f"CASE WHEN \"{EXAMPLE}\" IS NOT NULL THEN '#000000' END")
    )
    centroid = QgsCentroidFillSymbolLayer()
    centroid.setSubSymbol(marker)
    centroid.setPointOnSurface(True)
    centroid.setDataDefinedProperty(_property("LayerEnabled"), QgsProperty.fromExpression(f'"{EXAMPLE}" IS NOT NULL'))
    return centroid


def class_breaks(scores: np.ndarray, threshold: float | None, classes: int) -> np.ndarray:
    """Quantile breaks of the scores at or above the threshold: similarity scores of one model are usually
    crowded near the top (e.g. 0.95-1.00), and equal intervals would paint almost every chip one colour."""
    finite = scores[np.isfinite(scores)]
    if threshold is not None:
        finite = finite[finite >= threshold]
    if finite.size == 0:
        low = -1.0 if threshold is None else float(threshold)
        return np.array([low, max(low + 1e-3, 1.0)])
    breaks = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, classes + 1)))
    if len(breaks) < 2:
        value = float(breaks[0])
        breaks = np.array([value - 1e-3, value])
    if threshold is not None:
        breaks[0] = min(breaks[0], float(threshold))
    return breaks


def similarity_renderer(
    scores: np.ndarray, *, threshold: float | None = None, top_k: int = 10, classes: int = 7, field: str = SIMILARITY
) -> QgsGraduatedSymbolRenderer:
    """Graduated renderer on `similarity`: viridis quantile classes from the threshold to the best score; chips
    below the threshold fall outside every class and are not drawn, so the imagery shows through."""
    breaks = class_breaks(np.asarray(scores, dtype=np.float64), threshold, classes)
    ramp = viridis_ramp()
    ranges = []
    for index, (low, high) in enumerate(zip(breaks[:-1], breaks[1:], strict=True)):
        color = ramp.color(index / max(1, len(breaks) - 2))
        # Widen the outer edges a hair so the lowest/highest score is never lost to rounding.
        low_edge = low - 1e-6 if index == 0 else low
        high_edge = high + 1e-6 if index == len(breaks) - 2 else high
        ranges.append(QgsRendererRange(low_edge, high_edge, class_symbol(color, top_k), f"{low:.3f} – {high:.3f}"))
    if not ranges:
        ranges.append(QgsRendererRange(-1.0, 1.0, class_symbol(ramp.color(1.0), top_k), "-1.000 – 1.000"))
    renderer = QgsGraduatedSymbolRenderer(field, ranges)
    renderer.setSourceColorRamp(ramp)
    renderer.setClassAttribute(field)
    # Best matches and the examples are drawn last, so their outlines are not hidden by neighbours.
    order = QgsFeatureRequest.OrderBy(
        [
            QgsFeatureRequest.OrderByClause(
                f'coalesce("{field}", -2) + CASE WHEN "{EXAMPLE}" IS NULL THEN 0 ELSE 4 END', True
            )
        ]
    )
    renderer.setOrderBy(order)
    renderer.setOrderByEnabled(True)
    return renderer


def _swatch(outline: str, fill: str | None = None, marker: str | None = None) -> QIcon:
    pixmap = QPixmap(16, 16)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    pen = painter.pen()
    pen.setColor(QColor(outline))
    pen.setWidth(2)
    painter.setPen(pen)
    painter.setBrush(QColor(fill) if fill else QColor(0, 0, 0, 0))
    painter.drawRect(2, 2, 12, 12)
    if marker:
        painter.setPen(QColor("#000000"))
        painter.drawText(QRectF(pixmap.rect()), marker, QTextOption(Qt.AlignmentFlag.AlignCenter))
    painter.end()
    return QIcon(pixmap)


class SimilarityLegend(QgsMapLayerLegend):
    """The graduated classes plus what the outlines mean (top k, positive and negative examples)."""

    def __init__(self, layer: QgsVectorLayer, top_k: int, has_negatives: bool) -> None:
        super().__init__()
        self._default = QgsDefaultVectorLayerLegend(layer)
        self._top_k = top_k
        self._has_negatives = has_negatives

    def createLayerTreeModelLegendNodes(self, node_layer):  # noqa: N802 - QGIS API
        nodes = list(self._default.createLayerTreeModelLegendNodes(node_layer))
        if self._top_k > 0:
            nodes.append(
                QgsSimpleLegendNode(node_layer, f"top {self._top_k} matches (red outline)", _swatch(TOP_K_COLOR))
            )
        nodes.append(
            QgsSimpleLegendNode(
                node_layer, "query / positive example (white, ★)", _swatch("#000000", POSITIVE_COLOR, "★")
            )
        )
        if self._has_negatives:
            nodes.append(
                QgsSimpleLegendNode(node_layer, "negative example (black, ✕)", _swatch(NEGATIVE_COLOR, "#bbbbbb", "✕"))
            )
        for node in nodes:  # the layer tree model owns and deletes the nodes, not Python
            sip.transferto(node, None)
        return nodes


def style_similarity(
    layer: QgsVectorLayer,
    scores: np.ndarray,
    *,
    threshold: float | None = None,
    top_k: int = 10,
    has_negatives: bool = False,
    field: str = SIMILARITY,
) -> None:
    layer.setRenderer(similarity_renderer(scores, threshold=threshold, top_k=top_k, field=field))
    layer.setLegend(SimilarityLegend(layer, top_k, has_negatives))
    layer.triggerRepaint()
    layer.emitStyleChanged()


def style_chip_grid(layer: QgsVectorLayer) -> None:
    """Before any query: thin outlines only, so the imagery under the chips stays visible."""
    from qgis.core import QgsSingleSymbolRenderer

    symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": "#f2f2f2", "outline_width": "0.2"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


# ----------------------------------------------------------------------------------------------
# One query, end to end: the algorithm, the map tool and the dock all go through here
# ----------------------------------------------------------------------------------------------


def examples_of(positives: list[int], negatives: list[int]) -> dict[int, str]:
    examples = {row: NEGATIVE for row in negatives}
    examples.update({row: POSITIVE for row in positives})  # a row given as both counts as positive
    return examples


# Above this many rows a click scores through the two-stage sketch (clay_core.similarity.ProjectedIndex):
# exact scores for the best EXACT_TOP_MIN (or top k) rows, approximate colours for the rest. Below it exact
# scoring is already fast (100k x 768: ~0.1 s), so small layers always show exact scores.
FAST_PATH_ROWS = 200_000
EXACT_TOP_MIN = 100


def score_query(
    embedding_set: EmbeddingSet, query: np.ndarray, *, top_k: int = 10, exact: bool = False, centred: bool = True
) -> Scored:
    """Scores and ranks of every row for a unit query: the one scoring step behind clay:similarity, the map
    tool and the dock. Interactive callers (exact=False) on large files use the sketch once it is built; it is
    built in a background thread on the first click (seconds for 1M rows) while that click is scored exactly.
    clay:similarity writes the scores into its output, so it asks for exact scores."""
    index = embedding_set.index
    if not exact and len(index) > FAST_PATH_ROWS:
        if index.projection_ready():
            scores = index.fast_scores(query, exact_top=max(top_k, EXACT_TOP_MIN), centred=centred).scores
            return Scored(scores=scores, ranks=ranks_of(scores))
        embedding_set.sketch_build = index.build_projection_in_background() or embedding_set.sketch_build
    return index.score(query, centred=centred)


def query_of(
    embedding_set: EmbeddingSet,
    positive_vectors: np.ndarray,
    negative_vectors: np.ndarray | None = None,
    *,
    centred: bool = True,
) -> np.ndarray:
    """mean(positives) - mean(negatives) on unit vectors, checked against the file's dimension. The vectors
    may come from another file of the same model (clay:similarity's example layers)."""
    positive_vectors = np.atleast_2d(np.asarray(positive_vectors, dtype=np.float32))
    if positive_vectors.size == 0:
        raise ClayInputError("no query: give query chip id(s), a query point or positive example features")
    check_dimension(embedding_set.dim, positive_vectors.shape[1], "the positive examples")
    has_negatives = negative_vectors is not None and np.asarray(negative_vectors).size
    # centred: the direction from the search mean (clay_core.similarity's module doc); raw: combine_query
    return embedding_set.index.direction_of(
        positive_vectors, negative_vectors if has_negatives else None, centred=centred
    )
