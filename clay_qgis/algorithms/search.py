"""Several embeddings files as one search (shared by clay:similarity, clay:classify and clay:cluster): the
MORE_INPUTS parameter, the output fields and the rows of the files numbered across them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qgis.core import QgsProcessing, QgsProcessingParameterMultipleLayers

from clay_core.errors import ClayInputError
from clay_core.parsing import comma_list, split_chip_ref
from clay_qgis import compat
from clay_qgis.algorithms.base import LAYER_MODES
from clay_qgis.schema import SOURCE_FILE
from clay_qgis.vector_cache import EmbeddingSet

MORE_INPUTS_NAME = "MORE_INPUTS"


def add_search_inputs(algorithm, each: str) -> None:
    """INPUT (a GeoParquet), MORE_INPUTS (searched together with it) and MODE (chips or patches): the inputs of
    every algorithm that searches embeddings as one set (similarity, classify, cluster)."""
    from qgis.core import QgsProcessingParameterEnum, QgsProcessingParameterFile

    from clay_qgis.algorithms.base import LAYER_MODES
    from clay_qgis.algorithms.utils import GEOPARQUET_FILTER

    algorithm.addParameter(
        QgsProcessingParameterFile(algorithm.INPUT, "Embeddings file (GeoParquet)", fileFilter=GEOPARQUET_FILTER)
    )
    algorithm.addParameter(
        QgsProcessingParameterMultipleLayers(
            MORE_INPUTS_NAME,
            "More embeddings files (searched together with the first)",
            QgsProcessing.SourceType.TypeFile,
            optional=True,
        )
    )
    algorithm.addParameter(QgsProcessingParameterEnum(algorithm.MODE, each, options=LAYER_MODES, defaultValue=0))


def search_fields(mode: str, *, scores: bool = True):
    """The output fields of a search: the layer's fields (without the score fields where nothing is scored, as
    in clay:cluster) and the file each row came from."""
    from qgis.core import QgsField

    from clay_qgis.schema import layer_fields

    fields = layer_fields(mode, scores=scores)
    fields.append(QgsField(SOURCE_FILE, compat.STRING))
    return fields


@dataclass
class Search:
    """The embedding sets of one search (the first file, then the others), centred on their joint mean:
    rows are numbered across the files in that order."""

    targets: list[EmbeddingSet]
    offsets: np.ndarray  # [files + 1]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, row: int) -> tuple[int, int]:
        index = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return index, int(row - self.offsets[index])

    def name_of(self, row: int) -> str:
        index, local = self.locate(row)
        chip = self.targets[index].columns["chip_id"][local]
        return chip if len(self.targets) == 1 else f"{self.targets[index].path.name}:{chip}"

    def vectors(self, rows: list[int]) -> np.ndarray:
        return np.stack([self.targets[i].index.vectors[local] for i, local in map(self.locate, rows)])

    def rows_of_chip_ids(self, text: str, what: str) -> list[int]:
        """Rows for comma-separated chip ids; FILE:ID names one file's chip; an id in several files is refused."""
        rows: list[int] = []
        names = {target.path.name: i for i, target in enumerate(self.targets)}
        for chip_id in comma_list(text):
            file_name, plain_id = split_chip_ref(chip_id, names)
            if file_name is not None:
                found = [(names[file_name], row) for row in self.targets[names[file_name]].rows_of_chip(plain_id)]
            else:
                found = [(i, row) for i, target in enumerate(self.targets) for row in target.rows_of_chip(chip_id)]
            if not found:
                first = self.targets[0]
                example = first.columns["chip_id"][0] if len(first) else "none"
                where = first.path.name if len(self.targets) == 1 else "the files"
                raise ClayInputError(f"{what} chip id {chip_id!r} is not in {where} (ids look like {example!r})")
            files = sorted({self.targets[i].path.name for i, _ in found})
            if len(files) > 1:
                raise ClayInputError(
                    f"{what} chip id {chip_id!r} is in {len(files)} files: name one as FILE:ID, "
                    f"e.g. {files[0]}:{chip_id}"
                )
            rows += [int(self.offsets[i]) + row for i, row in found]
        return rows

    def row_of_point(self, point) -> int:
        from clay_core.similarity import row_at_point, rows_at_point

        for i, target in enumerate(self.targets[1:], 1):
            hits = rows_at_point(target.rings, point.x(), point.y())
            if hits and not rows_at_point(self.targets[0].rings, point.x(), point.y()):
                return int(self.offsets[i]) + hits[0]
        return row_at_point(self.targets[0].rings, point.x(), point.y())

    def features(self, fields, rows: np.ndarray, values: dict | None = None) -> list:
        """Output features for search rows (in the order given) with `values` (field name -> one value per
        given row, e.g. layers.score_values) and source_file: one pass per file, not one call per row."""
        from clay_qgis import layers

        return layers.features_across(self.targets, self.offsets, fields, rows, values)


def load_search(algorithm, parameters, context, feedback) -> Search:
    """INPUT and MORE_INPUTS as one search: every file read once (cached), same dimension, one joint mean."""
    from clay_core.similarity import centre_jointly, check_dimension
    from clay_qgis.vector_cache import load_embedding_set

    has_mode = algorithm.parameterDefinition("MODE") is not None
    mode = LAYER_MODES[algorithm.parameterAsEnum(parameters, "MODE", context)] if has_mode else "chips"
    paths = [algorithm.parameterAsFile(parameters, algorithm.INPUT, context)]
    more = parameters.get(MORE_INPUTS_NAME) or []
    paths += [str(value) for value in (more if isinstance(more, (list, tuple)) else [more]) if value]
    targets: list[EmbeddingSet] = []
    seen = set()
    for path in paths:
        target = load_embedding_set(path, mode, feedback)
        if target.path in seen:
            continue
        seen.add(target.path)
        if targets:
            check_dimension(targets[0].dim, target.dim, f"{target.path.name} ({target.model_name})")
        feedback.pushInfo(f"embeddings: {target.path.name}: {target.describe()} (read with {target.reader})")
        targets.append(target)
    if sum(len(target) for target in targets) == 0:
        names = ", ".join(target.path.name for target in targets)
        raise ClayInputError(
            f"{names} has no rows (nothing was embedded): there is no chip to compare with; embed an area first"
        )
    centre_jointly([target.index for target in targets])
    offsets = np.concatenate([[0], np.cumsum([len(target) for target in targets])]).astype(np.int64)
    return Search(targets=targets, offsets=offsets)
