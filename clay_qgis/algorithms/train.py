"""clay:train - pre-train (or continue pre-training) a Clay v0 model on chip folders or raster layers.

The work runs in the worker (`clay train SOURCE... -o CKPT`); the loss of each step is written to the log
as it comes, Cancel stops the worker at once and keeps the last checkpoint it saved (tick Resume to go on
from it). The checkpoint is this algorithm's output, so a model can hand it to clay:embed's Checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from clay_core.errors import ClayInputError
from clay_core.models.preset_table import TRAINABLE_PRESETS, preset_spec
from clay_qgis.algorithms.base import DEVICE_OPTIONS, ClayAlgorithm, make_output_folder
from clay_qgis.algorithms.rasters import raster_area, raster_source
from clay_qgis.algorithms.utils import date_argument

CHECKPOINT_FILTER = "Checkpoints (*.ckpt)"


class TrainAlgorithm(ClayAlgorithm):
    algorithm_id = "train"
    display_name = "Train (MAE pre-training)"
    group_id = "training"
    group_name = "Training"
    help_text = (
        "Pre-trains a Clay v0 model as a masked autoencoder, exactly as Clay v0 was trained, on your own "
        "chips: a chip folder (claytile_*.tif, or a folder of Sentinel-2 band files) or raster layers cut "
        "into chips over an extent. Start from a preset architecture (random weights) or continue from a "
        "checkpoint. The loss of each step is shown in the log and a loss plot (.loss.png) is written beside "
        "the checkpoint. The checkpoint is saved every N steps; Cancel keeps the last one, and Resume "
        "continues that run exactly. Use the trained checkpoint in 'Embed raster layer' (Checkpoint file). "
        "Runs in the Clay worker process (which needs torch); a GPU is used when there is one."
    )

    CHIP_FOLDER = "CHIP_FOLDER"
    MORE_CHIP_FOLDERS = "MORE_CHIP_FOLDERS"
    RASTERS = "RASTERS"
    EXTENT = "EXTENT"
    BAND_MAP = "BAND_MAP"
    DATE = "DATE"
    PRESET = "PRESET"
    IMAGE_SIZE = "IMAGE_SIZE"
    PATCH_SIZE = "PATCH_SIZE"
    STEPS = "STEPS"
    LEARNING_RATE = "LEARNING_RATE"
    CHECKPOINT_EVERY = "CHECKPOINT_EVERY"
    RESUME = "RESUME"
    LOSS_PLOT = "LOSS_PLOT"
    STEPS_DONE = "STEPS_DONE"
    FINAL_LOSS = "FINAL_LOSS"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFile(
                self.CHIP_FOLDER,
                "Chip folder (claytile_*.tif chips or Sentinel-2 band files)",
                behavior=QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.RASTERS,
                "Or raster layer(s) to cut into chips",
                QgsProcessing.SourceType.TypeRaster,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT, "Extent of the raster layers to train on (empty = all of them)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.PRESET,
                "Architecture (used when no checkpoint is given)",
                options=list(TRAINABLE_PRESETS),
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.CHECKPOINT,
                "Continue from this checkpoint (optional; overrides the architecture)",
                optional=True,
                fileFilter=CHECKPOINT_FILTER + ";;All files (*)",
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.IMAGE_SIZE,
                "Model input size in pixels (0 = the architecture's)",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.PATCH_SIZE,
                "Patch size in pixels (0 = the architecture's)",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.STEPS,
                "Train until this optimizer step",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=1000,
                minValue=1,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.RESUME, "Resume the run saved in the output checkpoint", defaultValue=False
            )
        )
        self.add_advanced_parameters()
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT, "Trained checkpoint", fileFilter=CHECKPOINT_FILTER)
        )
        self.addOutput(QgsProcessingOutputFile(self.LOSS_PLOT, "Loss plot (PNG)"))
        self.addOutput(QgsProcessingOutputNumber(self.STEPS_DONE, "Optimizer steps done"))
        self.addOutput(QgsProcessingOutputNumber(self.FINAL_LOSS, "Mean loss of the last 10 steps"))

    def add_advanced_parameters(self) -> None:
        advanced = [
            QgsProcessingParameterString(self.MORE_CHIP_FOLDERS, "More chip folders, separated by ;", optional=True),
            QgsProcessingParameterString(
                self.BAND_MAP,
                "Band mapping of the raster layers, e.g. B04=1,B03=2,B02=3 (empty = from band names)",
                optional=True,
            ),
            QgsProcessingParameterString(
                self.DATE,
                "Acquisition date of the raster layers YYYY-MM-DD (empty = from the files)",
                optional=True,
            ),
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                "Chips per batch",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=8,
                minValue=1,
            ),
            QgsProcessingParameterNumber(
                self.LEARNING_RATE,
                "Learning rate",
                type=QgsProcessingParameterNumber.Type.Double,
                defaultValue=1e-4,
                minValue=1e-9,
            ),
            QgsProcessingParameterNumber(
                self.CHECKPOINT_EVERY,
                "Save the checkpoint every N steps",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=100,
                minValue=1,
            ),
            QgsProcessingParameterEnum(self.DEVICE, "Device", options=DEVICE_OPTIONS, defaultValue=0),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(parameter)

    def command(self, parameters, context, feedback) -> list[str]:
        arguments, self.output_path = self.worker_arguments(parameters, context)
        return arguments

    def partial_outputs(self, parameters, context) -> tuple[Path, list[str]]:
        """On cancel only the temporaries go: the last saved checkpoint (and its plot) is a run to resume."""
        output = self.output_path
        plot = output.with_name(output.stem + ".loss.png")
        return output.parent, [f".{output.name}.*", f".{plot.name}.*"]

    def worker_feedback(self, feedback):
        return LossLog.around(feedback)

    def cancelled(self, feedback) -> None:
        if self.output_path.is_file():
            feedback.pushInfo(f"cancelled; {self.output_path} holds the last saved step: tick Resume to continue")

    def load_results(self, result, parameters, context, feedback) -> dict[str, Any]:
        checkpoint = result.get("checkpoint") or str(self.output_path)
        feedback.pushInfo(f"trained checkpoint: {checkpoint} (use it as the Checkpoint file of Embed raster layer)")
        return {
            self.OUTPUT: checkpoint,
            self.LOSS_PLOT: result.get("loss_plot"),
            self.STEPS_DONE: result.get("global_step"),
            self.FINAL_LOSS: result.get("final_loss"),
        }

    def worker_arguments(self, parameters, context) -> tuple[list[str], Path]:
        output = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        if output.suffix.lower() != ".ckpt":
            output = output.with_suffix(".ckpt")
        make_output_folder(output.parent)
        resume = self.parameterAsBoolean(parameters, self.RESUME, context)
        arguments = [
            "train",
            *self.source_arguments(parameters, context),
            "-o",
            str(output),
            "--resume" if resume else "--overwrite",
        ]
        arguments += self.model_size_arguments(parameters, context)
        arguments += [
            "--steps",
            str(self.parameterAsInt(parameters, self.STEPS, context)),
            "--batch-size",
            str(self.parameterAsInt(parameters, self.BATCH_SIZE, context)),
            "--lr",
            repr(self.parameterAsDouble(parameters, self.LEARNING_RATE, context)),
            "--checkpoint-every",
            str(self.parameterAsInt(parameters, self.CHECKPOINT_EVERY, context)),
            "--device",
            self.device_value(parameters, context),
        ]
        return arguments, output

    def source_arguments(self, parameters, context) -> list[str]:
        """Chip folders as they are; raster layers as their files with the area (--bbox) to cut into chips."""
        folders = [self.parameterAsFile(parameters, self.CHIP_FOLDER, context)]
        folders += self.parameterAsString(parameters, self.MORE_CHIP_FOLDERS, context).split(";")
        folders = [folder.strip() for folder in folders if folder and folder.strip()]
        for folder in folders:
            if not Path(folder).is_dir() and not folder.startswith("s3://"):
                raise ClayInputError(f"chip folder {folder} does not exist")
        rasters = self.parameterAsLayerList(parameters, self.RASTERS, context)
        if folders and rasters:
            raise ClayInputError("give chip folders or raster layers, not both (train on each in turn with Resume)")
        if folders:
            return folders
        if not rasters:
            raise ClayInputError("nothing to train on: choose a chip folder or raster layer(s)")
        extent = crs = None
        if parameters.get(self.EXTENT):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context)
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        bbox, bbox_crs = raster_area(rasters, extent, crs, context)
        arguments = [
            *(raster_source(layer) for layer in rasters),
            "--bbox",
            ",".join(f"{value:.10g}" for value in bbox),
            "--bbox-crs",
            bbox_crs,
        ]
        chip_size = self.chip_size(parameters, context)
        if chip_size:
            arguments += ["--chip-size", str(chip_size)]
        date = date_argument(self.parameterAsString(parameters, self.DATE, context), "acquisition date")
        if date:
            arguments += ["--date", date]
        band_map = self.parameterAsString(parameters, self.BAND_MAP, context).replace(" ", "")
        if band_map:
            arguments += ["--band-map", band_map]
        return arguments

    def chip_size(self, parameters, context) -> int | None:
        """Chips cut from rasters are the model's input size (the preset table's, unless set); unknown when
        continuing from a checkpoint without an input size (the worker's default chip then applies)."""
        size = self.parameterAsInt(parameters, self.IMAGE_SIZE, context)
        if size > 0:
            return size
        if self.parameterAsFile(parameters, self.CHECKPOINT, context):
            return None
        return preset_spec(self.preset(parameters, context)).image_size

    def preset(self, parameters, context) -> str:
        return TRAINABLE_PRESETS[self.parameterAsEnum(parameters, self.PRESET, context)]

    def model_size_arguments(self, parameters, context) -> list[str]:
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if checkpoint and not Path(checkpoint).is_file():
            raise ClayInputError(f"checkpoint file {checkpoint} does not exist")
        arguments = ["--init", checkpoint] if checkpoint else ["--preset", self.preset(parameters, context)]
        for name, flag in ((self.IMAGE_SIZE, "--image-size"), (self.PATCH_SIZE, "--patch-size")):
            value = self.parameterAsInt(parameters, name, context)
            if value > 0:
                arguments += [flag, str(value)]
        return arguments


class LossLog:
    """The run's feedback, plus one log line per training progress message ("step 3/100 | loss ...").

    The worker relays progress as the progress bar's text, which the next message replaces; the log keeps
    every step's loss where the user (and a saved log) can read it."""

    def __init__(self, feedback) -> None:
        self._feedback = feedback
        self._last = ""

    @classmethod
    def around(cls, feedback):
        return cls(feedback) if feedback is not None else None

    def setProgressText(self, text: str) -> None:  # noqa: N802 - QgsProcessingFeedback API
        self._feedback.setProgressText(text)
        if text.startswith("step ") and text != self._last:
            self._last = text
            self._feedback.pushInfo(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feedback, name)
