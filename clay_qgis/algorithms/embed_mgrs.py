"""clay:embedmgrs - embed every chip of one MGRS tile over a date range from a folder, s3:// prefix or STAC
API, into `{MGRS}_{MINDATE}_{MAXDATE}_v{VERSION}.gpq`, then load it. Runs `clay embed-mgrs` in the worker."""

from __future__ import annotations

import re
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
from clay_qgis.algorithms.embed import parse_date

MGRS_TILE = re.compile(r"^(0?[1-9]|[1-5][0-9]|60)[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V]$")


def check_tile(text: str) -> str:
    """The tile id as the CLI checks it (clay_core.validate): one wording of the error everywhere."""
    tile = (text or "").strip().upper()
    if not MGRS_TILE.match(tile.removeprefix("T")):
        validate.tile_id(text or "")  # raises with the reason (zone, column letter, ...)
        raise ClayInputError(f"{text!r} is not an MGRS tile id: use zone + band + square, e.g. 33UUU")
    return validate.tile_id(tile)


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
        self.addParameter(QgsProcessingParameterString(
            self.SOURCE, "Source: folder, s3://bucket/prefix or stac+https://… STAC API"))
        self.addParameter(QgsProcessingParameterString(self.START, "Start date (YYYY-MM-DD)"))
        self.addParameter(QgsProcessingParameterString(self.END, "End date (YYYY-MM-DD)"))
        self.add_model_parameters()
        self.add_satclip_parameter()
        self.add_chip_parameters()
        self.add_run_parameters()
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder"))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT, "Embeddings file"))
        self.addOutput(QgsProcessingOutputVectorLayer(self.OUTPUT_LAYER, "Embedded chips",
                                                      QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.CHIPS, "Number of rows written"))

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        try:
            arguments, folder, tile = self.worker_arguments(parameters, context)
        except ClayInputError as exc:
            raise QgsProcessingException(str(exc)) from exc
        result = self.run_worker_writing(arguments, feedback, folder, [f"{tile}_*.gpq", f"{tile}_*.gpq.parts",
                                                                       f".{tile}_*"])
        outputs = result.get("outputs") or ([result["output"]] if result.get("output") else [])
        written = Path(outputs[0]) if outputs else newest_output(folder, tile)
        return self.load_embeddings_result(written, context, feedback)

    def worker_arguments(self, parameters, context) -> tuple[list[str], Path, str]:
        tile = check_tile(self.parameterAsString(parameters, self.TILE, context))
        source = self.parameterAsString(parameters, self.SOURCE, context).strip()
        if not source:
            raise ClayInputError("give a source: a folder, an s3:// prefix or a stac+https:// STAC API URL")
        start = parse_date(self.parameterAsString(parameters, self.START, context), "start date")
        end = parse_date(self.parameterAsString(parameters, self.END, context), "end date")
        if not start or not end:
            raise ClayInputError("give both a start and an end date (YYYY-MM-DD)")
        validate.date_range(start, end, "the start date", "the end date")
        folder = Path(self.parameterAsString(parameters, self.OUTPUT_FOLDER, context))
        make_output_folder(folder)
        validate.output_folder(folder, "output folder")
        arguments = ["embed-mgrs", tile, "--source", source, "--start", start, "--end", end, "-o", str(folder),
                     "--overwrite"]
        arguments += self.model_arguments(parameters, context) + self.chip_arguments(parameters, context)
        arguments += self.satclip_arguments(parameters, context)
        arguments += self.run_arguments(parameters, context)
        return arguments, folder, tile


def newest_output(folder: Path, tile: str) -> Path:
    candidates = sorted(folder.glob(f"{tile}_*.gpq"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise QgsProcessingException(f"the worker finished but wrote no {tile}_*.gpq file into {folder}")
    return candidates[-1]
