"""clay:embed - embed raster layer(s) over an extent (the canvas extent by default in the GUI) into GeoParquet,
then load the chips as a layer. The work runs in the worker: `clay embed SOURCE... --bbox ... -o OUT.gpq`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
)

from clay_core import validate
from clay_core.errors import ClayInputError
from clay_qgis.algorithms.base import ClayAlgorithm, make_output_folder, output_patterns
from clay_qgis.algorithms.rasters import raster_area, raster_source

BAND_MAP_PATTERN = re.compile(r"^\s*[A-Za-z0-9]+\s*=\s*[^,=]+\s*(,\s*[A-Za-z0-9]+\s*=\s*[^,=]+\s*)*$")
GEOPARQUET_OUTPUT_FILTER = "GeoParquet (*.gpq *.parquet)"


def parse_date(text: str, what: str = "date") -> str | None:
    """'' -> None; 'YYYY-MM-DD' -> the same text (the CLI argument); anything else -> a message naming the format."""
    from clay_core.parsing import parse_date as parse_iso_date

    text = (text or "").strip()
    return parse_iso_date(text, what).isoformat() if text else None


class EmbedRasterAlgorithm(ClayAlgorithm):
    algorithm_id = "embed"
    display_name = "Embed raster layer"
    help_text = (
        "Cuts the raster layer(s) into chips over the extent (the map canvas extent is offered by default; any "
        "CRS), reprojects them to the extent's local UTM zone at 10 m, embeds every chip with the Clay model and "
        "writes a GeoParquet file, then loads the chips as a layer ready for Find similar. Give one multi-band "
        "raster or one raster per band; bands are recognised from their names/descriptions (B02, B04, red, nir ...) "
        "or from the band mapping (e.g. B04=1,B03=2,B02=3,B08=4). Bands the model needs but the rasters lack are "
        "filled with the normalisation mean and listed in the file. Runs in a separate Python process (the "
        "configured worker interpreter, which needs torch); Cancel stops it at once and removes the partial output."
    )

    INPUT = "INPUT"
    EXTENT = "EXTENT"
    BAND_MAP = "BAND_MAP"
    DATE = "DATE"
    EXPLODE_PATCHES = "EXPLODE_PATCHES"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterMultipleLayers(self.INPUT, "Raster layer(s)",
                                                               QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Extent (empty = the whole raster)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.BAND_MAP, "Band mapping, e.g. B04=1,B03=2,B02=3 (empty = from band names)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.DATE, "Acquisition date YYYY-MM-DD (empty = from the files)", optional=True))
        self.add_model_parameters()
        self.add_satclip_parameter()
        self.add_chip_parameters()
        self.addParameter(QgsProcessingParameterBoolean(
            self.EXPLODE_PATCHES, "Write one row per patch (patch/group level)", defaultValue=False))
        self.add_run_parameters()
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Embeddings file",
                                                                fileFilter=GEOPARQUET_OUTPUT_FILTER))
        self.addOutput(QgsProcessingOutputVectorLayer(self.OUTPUT_LAYER, "Embedded chips",
                                                      QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.CHIPS, "Number of rows written"))

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        try:
            arguments, output = self.worker_arguments(parameters, context, feedback)
        except ClayInputError as exc:
            raise QgsProcessingException(str(exc)) from exc
        result = self.run_worker_writing(arguments, feedback, output.parent, output_patterns(output.name))
        written = Path(result.get("output") or output)
        return self.load_embeddings_result(written, context, feedback)

    def worker_arguments(self, parameters, context, feedback) -> tuple[list[str], Path]:
        rasters = self.parameterAsLayerList(parameters, self.INPUT, context)
        if not rasters:
            raise ClayInputError("choose at least one raster layer")
        sources = [raster_source(layer) for layer in rasters]
        bbox, bbox_crs = self.area(parameters, context, rasters)
        output = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        if output.suffix.lower() not in validate.GEOPARQUET_SUFFIXES:
            output = output.with_suffix(".gpq")
        make_output_folder(output.parent)
        validate.output_file(output, True, option="Embeddings file")
        arguments = ["embed", *sources, "-o", str(output), "--overwrite",
                     "--bbox=" + ",".join(f"{v:.10g}" for v in bbox), "--bbox-crs", bbox_crs]
        date = parse_date(self.parameterAsString(parameters, self.DATE, context), "Acquisition date")
        if date:
            arguments += ["--date", date]
        band_map = self.parameterAsString(parameters, self.BAND_MAP, context).strip()
        if band_map:
            if not BAND_MAP_PATTERN.match(band_map):
                raise ClayInputError(f"band mapping {band_map!r} must look like B04=1,B03=2,B02=3 "
                                     "(Clay band = band number or band name)")
            validate.band_map(band_map, "band mapping")
            arguments += ["--band-map", band_map.replace(" ", "")]
        if self.parameterAsBoolean(parameters, self.EXPLODE_PATCHES, context):
            arguments.append("--explode-patches")
        arguments += self.model_arguments(parameters, context) + self.chip_arguments(parameters, context)
        arguments += self.satclip_arguments(parameters, context)
        arguments += self.run_arguments(parameters, context)
        return arguments, output

    def area(self, parameters, context, rasters: list) -> tuple[tuple[float, float, float, float], str]:
        """The bbox to embed and its CRS (see rasters.raster_area): the extent parameter, else the rasters'."""
        extent = crs = None
        if parameters.get(self.EXTENT):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context)
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        return raster_area(rasters, extent, crs, context)
