"""clay:embed - embed raster layer(s) over an extent (the canvas extent by default in the GUI) into GeoParquet,
then load the chips as a layer. The work runs in the worker: `clay embed SOURCE... --bbox ... -o OUT.gpq`.
Layers that are not files (WMS, XYZ tiles, any non-GDAL provider) are first fetched in-process into a
temporary GeoTIFF on the area's UTM grid (clay_qgis.fetch), removed again when the run ends however it ends."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from clay_core import validate
from clay_core.errors import ClayInputError
from clay_core.models.preset_table import preset_spec
from clay_qgis import fetch
from clay_qgis.algorithms.base import MODEL_PRESETS, ClayAlgorithm, make_output_folder, output_patterns
from clay_qgis.algorithms.rasters import raster_area, raster_source
from clay_qgis.algorithms.utils import GEOPARQUET_OUTPUT_FILTER, date_argument

# A tensor name only Clay v1/v1.5 checkpoints hold (clay_core.models.clay_v15.SIGNATURE_KEY, which needs torch
# to import): found in the checkpoint's pickle, safetensors header or legacy pickle head without unpickling.
V15_SIGNATURE = b"weight_generator.weight_tokens"
SNIFF_BYTES = 16 << 20


def checkpoint_family(path: Path) -> str | None:
    """ "clay-v1.5" when the checkpoint holds the v1.5 encoder, "other" when it is readable and does not, None
    when it cannot be told here (the worker decides)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [name for name in archive.namelist() if name.endswith("data.pkl")]
                if not names:
                    return None
                head = archive.read(names[0])
        else:
            with open(path, "rb") as handle:
                head = handle.read(SNIFF_BYTES)
    except (OSError, zipfile.BadZipFile):
        return None
    return "clay-v1.5" if V15_SIGNATURE in head else "other"


class EmbedRasterAlgorithm(ClayAlgorithm):
    algorithm_id = "embed"
    display_name = "Embed raster layer"
    help_text = (
        "Cuts the raster layer(s) into chips over the extent (the map canvas extent is offered by default; any "
        "CRS), reprojects them to the extent's local UTM zone at 10 m, embeds every chip with the Clay model and "
        "writes a GeoParquet file, then loads the chips as a layer ready for Find similar. Give one multi-band "
        "raster or one raster per band; bands are recognised from their names/descriptions (B02, B04, red, nir ...) "
        "or from the band mapping (e.g. B04=1,B03=2,B02=3,B08=4). Bands the model needs but the rasters lack are "
        "filled with the normalisation mean and listed in the file. Any layer QGIS draws works, including WMS and "
        "XYZ imagery: it is fetched over the extent at the chosen resolution into a temporary GeoTIFF first "
        "(RGB web imagery needs a Clay v1.5 checkpoint, which embeds red, green and blue by wavelength, and an "
        "acquisition date). Runs in a separate Python process (the configured worker interpreter, which needs "
        "torch); Cancel stops it at once and removes the partial output."
    )

    INPUT = "INPUT"
    EXTENT = "EXTENT"
    BAND_MAP = "BAND_MAP"
    DATE = "DATE"
    EXPLODE_PATCHES = "EXPLODE_PATCHES"
    RESOLUTION = "RESOLUTION"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterMultipleLayers(self.INPUT, "Raster layer(s)", QgsProcessing.SourceType.TypeRaster)
        )
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Extent (empty = the whole raster)", optional=True))
        self.addParameter(
            QgsProcessingParameterString(
                self.BAND_MAP, "Band mapping, e.g. B04=1,B03=2,B02=3 (empty = from band names)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.DATE, "Acquisition date YYYY-MM-DD (empty = from the files)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.RESOLUTION,
                "Resolution in metres per pixel (0 = automatic: a WCS-like layer's own, else 10 m)",
                type=QgsProcessingParameterNumber.Type.Double,
                defaultValue=0.0,
                minValue=0.0,
            )
        )
        self.add_model_parameters()
        self.add_satclip_parameter()
        self.add_chip_parameters()
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.EXPLODE_PATCHES, "Write one row per patch (patch/group level)", defaultValue=False
            )
        )
        self.add_run_parameters()
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT, "Embeddings file", fileFilter=GEOPARQUET_OUTPUT_FILTER)
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.OUTPUT_LAYER, "Embedded chips", QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.CHIPS, "Number of rows written"))

    def command(self, parameters, context, feedback) -> list[str]:
        folder = self.temporaries.enter_context(fetch.FetchFolder())  # fetched layers, until the worker is done
        arguments, self.output_path = self.worker_arguments(parameters, context, feedback, folder)
        return arguments

    def partial_outputs(self, parameters, context) -> tuple[Path, list[str]]:
        return self.output_path.parent, output_patterns(self.output_path.name)

    def load_results(self, result, parameters, context, feedback) -> dict[str, Any]:
        written = Path(result.get("output") or self.output_path)
        return self.load_embeddings_result(written, context, feedback)

    def worker_arguments(
        self, parameters, context, feedback, fetch_folder: Path | None = None
    ) -> tuple[list[str], Path]:
        rasters = self.parameterAsLayerList(parameters, self.INPUT, context)
        if not rasters:
            raise ClayInputError("choose at least one raster layer")
        fetched = [layer for layer in rasters if fetch.needs_fetch(layer)]
        for layer in rasters:
            if layer not in fetched:
                raster_source(layer)  # refuses anything that is neither a file nor fetchable, before any work
        if not parameters.get(self.EXTENT):
            for layer in fetched:
                if not fetch.has_pixel_grid(layer):
                    raise ClayInputError(
                        f"layer {layer.name()!r} is tiled imagery that covers the world: give "
                        "the Extent to embed (e.g. the map canvas extent)"
                    )
        bbox, bbox_crs = self.area(parameters, context, rasters)
        output = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        if output.suffix.lower() not in validate.GEOPARQUET_SUFFIXES:
            output = output.with_suffix(".gpq")
        make_output_folder(output.parent)
        validate.output_file(output, True, option="Embeddings file")
        date = date_argument(self.parameterAsString(parameters, self.DATE, context), "Acquisition date")
        band_map = self.band_map(parameters, context)
        resolution = self.parameterAsDouble(parameters, self.RESOLUTION, context) or None
        fetched_paths: dict[str, str] = {}
        if fetched:
            self.check_fetchable(parameters, context, rasters, fetched, date)
            bbox, bbox_crs, resolution, fetched_paths = self.fetch_layers(
                fetched, bbox, bbox_crs, resolution, context, feedback, fetch_folder
            )
        sources = [fetched_paths.get(layer.id()) or raster_source(layer) for layer in rasters]
        arguments = [
            "embed",
            *sources,
            "-o",
            str(output),
            "--overwrite",
            "--bbox=" + ",".join(f"{v:.10g}" for v in bbox),
            "--bbox-crs",
            bbox_crs,
        ]
        if resolution:
            arguments += ["--resolution", f"{resolution:.10g}"]
        if date:
            arguments += ["--date", date]
        if band_map:
            arguments += ["--band-map", band_map]
        if self.parameterAsBoolean(parameters, self.EXPLODE_PATCHES, context):
            arguments.append("--explode-patches")
        arguments += self.model_arguments(parameters, context) + self.chip_arguments(parameters, context)
        arguments += self.satclip_arguments(parameters, context)
        arguments += self.run_arguments(parameters, context)
        return arguments, output

    def band_map(self, parameters, context) -> str:
        band_map = self.parameterAsString(parameters, self.BAND_MAP, context).strip()
        validate.band_map(band_map, "band mapping")  # clay_core's parser: the CLI's wording of each problem
        return band_map.replace(" ", "")

    def check_fetchable(self, parameters, context, rasters: list, fetched: list, date: str | None) -> None:
        """What a fetched layer needs, checked before any pixel is requested: a date (web imagery has none)
        and, for RGB-only input, a model that embeds bands by wavelength (Clay v1.5)."""
        if not date:
            raise ClayInputError(
                f"layer {fetched[0].name()!r} does not tell its acquisition date: give the "
                "Acquisition date (YYYY-MM-DD) of the imagery"
            )
        if all(fetch.is_rgb_image(layer) for layer in rasters) and self.model_family(parameters, context) not in (
            None,
            "clay-v1.5",
        ):
            raise ClayInputError(
                f"layer {fetched[0].name()!r} is RGB imagery (red, green, blue only) and Clay v0 needs "
                "Sentinel-2 bands: choose a Clay v1.5 checkpoint (Checkpoint file, e.g. clay-v1.5.ckpt)"
            )

    def model_family(self, parameters, context) -> str | None:
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if checkpoint:
            return checkpoint_family(Path(checkpoint))
        return preset_spec(MODEL_PRESETS[self.parameterAsEnum(parameters, self.MODEL, context)]).family

    def fetch_layers(
        self, fetched: list, bbox, bbox_crs: str, resolution: float | None, context, feedback, folder: Path | None
    ) -> tuple[tuple[float, float, float, float], str, float, dict[str, str]]:
        """Fetch every non-file layer over the area into `folder`. Returns the area as the fetched UTM grid
        (the worker chips the files on exactly that grid), its CRS, the resolution and layer id -> file."""
        from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

        if folder is None:
            raise ClayInputError("fetching a layer needs a temporary folder")
        crs = QgsCoordinateReferenceSystem(bbox_crs)
        if not crs.isValid():
            crs = QgsCoordinateReferenceSystem.fromWkt(bbox_crs)
        resolution = fetch.choose_resolution(fetched, resolution, context)  # one grid for every layer
        plans = [fetch.plan_fetch(layer, QgsRectangle(*bbox), crs, resolution, context) for layer in fetched]
        paths = {}
        for index, plan in enumerate(plans):
            path = folder / f"{fetch_name(plan.layer.name(), index)}.tif"
            feedback.pushInfo(f"fetching {plan.describe()} into {path}")
            paths[plan.layer.id()] = str(fetch.fetch_to_geotiff(plan, path, feedback))
        first = plans[0]
        return first.bbox, f"EPSG:{first.epsg}", first.resolution_m, paths

    def area(self, parameters, context, rasters: list) -> tuple[tuple[float, float, float, float], str]:
        """The bbox to embed and its CRS (see rasters.raster_area): the extent parameter, else the rasters'."""
        extent = crs = None
        if parameters.get(self.EXTENT):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context)
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        return raster_area(rasters, extent, crs, context)


def fetch_name(layer_name: str, index: int) -> str:
    """A file name for a fetched layer: its name (the chip ids start with it), safe on every platform."""
    return (re.sub(r"[^0-9A-Za-z-]+", "-", layer_name).strip("-")[:40] or "layer") + (f"-{index}" if index else "")
