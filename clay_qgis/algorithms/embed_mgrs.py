"""clay:embedmgrs - embed every chip of one MGRS tile over a date range from a folder, s3:// prefix or STAC
API, into `{MGRS}_{MINDATE}_{MAXDATE}_v{VERSION}.gpq`, then load it. Runs `clay embed-mgrs` in the worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterString,
)

from clay_core import validate
from clay_core.errors import ClayInputError
from clay_qgis.algorithms.base import ClayAlgorithm, make_output_folder
from clay_qgis.algorithms.utils import date_argument


class EmbedMgrsAlgorithm(ClayAlgorithm):
    algorithm_id = "embedmgrs"
    display_name = "Embed MGRS tile"
    help_text = (
        "Embeds one Sentinel-2 MGRS tile (e.g. 33UUU) over a date range. The source is a local folder of chips "
        "or scenes, an s3:// prefix, or a STAC API (stac+https://...). Writes "
        "{MGRS}_{MINDATE}_{MAXDATE}_v{VERSION}.gpq into the output folder (the naming of Clay's published "
        "embeddings) and loads the chips as a layer. Runs in a separate Python process (which needs torch); "
        "Cancel stops it at once and removes the partial output."
    )

    TILE = "TILE"
    SOURCE = "SOURCE"
    START = "START"
    END = "END"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterString(self.TILE, "MGRS tile id (e.g. 33UUU)"))
        self.addParameter(
            QgsProcessingParameterString(self.SOURCE, "Source: folder, s3://bucket/prefix or stac+https://… STAC API")
        )
        self.addParameter(QgsProcessingParameterString(self.START, "Start date (YYYY-MM-DD)"))
        self.addParameter(QgsProcessingParameterString(self.END, "End date (YYYY-MM-DD)"))
        self.add_model_parameters()
        self.add_satclip_parameter()
        self.add_chip_parameters()
        self.add_run_parameters()
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder"))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT, "Embeddings file"))
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.OUTPUT_LAYER, "Embedded chips", QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.CHIPS, "Number of rows written"))

    def command(self, parameters, context, feedback) -> list[str]:
        arguments, self.folder, self.tile = self.worker_arguments(parameters, context)
        return arguments

    def partial_outputs(self, parameters, context) -> tuple[Path, list[str]]:
        tile = self.tile
        return self.folder, [f"{tile}_*.gpq", f"{tile}_*.gpq.parts", f".{tile}_*"]

    def load_results(self, result, parameters, context, feedback) -> dict[str, Any]:
        outputs = result.get("outputs") or ([result["output"]] if result.get("output") else [])
        written = Path(outputs[0]) if outputs else newest_output(self.folder, self.tile)
        return self.load_embeddings_result(written, context, feedback)

    def worker_arguments(self, parameters, context) -> tuple[list[str], Path, str]:
        tile = validate.tile_id(self.parameterAsString(parameters, self.TILE, context) or "")
        source = self.parameterAsString(parameters, self.SOURCE, context).strip()
        if not source:
            raise ClayInputError("give a source: a folder, an s3:// prefix or a stac+https:// STAC API URL")
        start = date_argument(self.parameterAsString(parameters, self.START, context), "start date")
        end = date_argument(self.parameterAsString(parameters, self.END, context), "end date")
        if not start or not end:
            raise ClayInputError("give both a start and an end date (YYYY-MM-DD)")
        validate.date_range(start, end, "the start date", "the end date")
        folder = Path(self.parameterAsString(parameters, self.OUTPUT_FOLDER, context))
        make_output_folder(folder)
        validate.output_folder(folder, "output folder")
        arguments = [
            "embed-mgrs",
            tile,
            "--source",
            source,
            "--start",
            start,
            "--end",
            end,
            "-o",
            str(folder),
            "--overwrite",
        ]
        arguments += self.model_arguments(parameters, context) + self.chip_arguments(parameters, context)
        arguments += self.satclip_arguments(parameters, context)
        arguments += self.run_arguments(parameters, context)
        return arguments, folder, tile


def newest_output(folder: Path, tile: str) -> Path:
    candidates = sorted(folder.glob(f"{tile}_*.gpq"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise QgsProcessingException(f"the worker finished but wrote no {tile}_*.gpq file into {folder}")
    return candidates[-1]
