"""One module per Processing algorithm, all on `ClayAlgorithm` (base.py)."""

from __future__ import annotations

from clay_qgis.algorithms.base import ClayAlgorithm
from clay_qgis.algorithms.info import InfoAlgorithm

ALGORITHM_CLASSES: list[type[ClayAlgorithm]] = [
    InfoAlgorithm,
]


def all_algorithms() -> list[ClayAlgorithm]:
    return [cls() for cls in ALGORITHM_CLASSES]
