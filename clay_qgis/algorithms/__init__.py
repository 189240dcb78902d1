"""One module per Processing algorithm, all on `ClayAlgorithm` (base.py)."""

from __future__ import annotations

from clay_qgis.algorithms.base import ClayAlgorithm
from clay_qgis.algorithms.change import ChangeAlgorithm
from clay_qgis.algorithms.classify import ClassifyAlgorithm
from clay_qgis.algorithms.cluster import ClusterAlgorithm
from clay_qgis.algorithms.embed import EmbedRasterAlgorithm
from clay_qgis.algorithms.embed_locations import EmbedLocationsAlgorithm
from clay_qgis.algorithms.embed_mgrs import EmbedMgrsAlgorithm
from clay_qgis.algorithms.info import InfoAlgorithm
from clay_qgis.algorithms.load_embeddings import LoadEmbeddingsAlgorithm
from clay_qgis.algorithms.render_map import RenderMapAlgorithm
from clay_qgis.algorithms.setup_runtime import SetupRuntimeAlgorithm
from clay_qgis.algorithms.similarity import SimilarityAlgorithm
from clay_qgis.algorithms.train import TrainAlgorithm

ALGORITHM_CLASSES: list[type[ClayAlgorithm]] = [
    InfoAlgorithm,
    EmbedMgrsAlgorithm,
    EmbedRasterAlgorithm,
    LoadEmbeddingsAlgorithm,
    SimilarityAlgorithm,
    ClassifyAlgorithm,
    ClusterAlgorithm,
    ChangeAlgorithm,
    EmbedLocationsAlgorithm,
    RenderMapAlgorithm,
    SetupRuntimeAlgorithm,
    TrainAlgorithm,
]


def all_algorithms() -> list[ClayAlgorithm]:
    return [cls() for cls in ALGORITHM_CLASSES]
