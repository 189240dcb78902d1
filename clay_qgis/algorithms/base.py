"""Shared base of every clay algorithm: naming, help, common parameters, running the worker, loading outputs."""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsVectorLayer,
)

from clay_core.device_options import DEVICES
from clay_core.errors import ClayInputError
from clay_core.models.preset_table import QGIS_MODEL_CHOICES
from clay_core.provenance import redact
from clay_qgis.schema import MODES
from clay_qgis.worker import RuntimeMissingError, WorkerError, notify_runtime_missing, run_clay

DEVICE_OPTIONS = list(DEVICES)  # the worker's --device choices (auto, cpu, cuda, mps); no torch import
MODEL_PRESETS = list(QGIS_MODEL_CHOICES)  # clay_core's torch-free preset table, in the enum's fixed order
LEVEL_OPTIONS = ["model default", "mean", "patch", "group", "cls"]
LAYER_MODES = list(MODES)


def reported_once(process: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The one error mapping of every clay algorithm: an input problem (ClayInputError, raised by the shared
    validators in clay_core.validate or by the compute code) or a QgsProcessingException leaves as one
    QgsProcessingException with the same one-line message.

    Why the message log is muted under qgis_process: QGIS reports a failed algorithm three times there (its
    run() logs the exception as a Critical message, feedback.reportError prints "ERROR:" and logs it as
    Critical once more, and qgis_process echoes Critical messages to stderr). The process ends with this
    error, so muting the log for the rest of it leaves exactly the "ERROR:" line. In the QGIS desktop the
    log panel is left alone."""

    @functools.wraps(process)
    def run(self, parameters, context, feedback):
        try:
            return process(self, parameters, context, feedback)
        except Exception as exc:
            if not isinstance(exc, ClayInputError | QgsProcessingException):
                raise
            if QgsApplication.platform() == "qgis_process":
                QgsApplication.messageLog().blockSignals(True)
            message = exc.args[0] if isinstance(exc, QgsProcessingException) and exc.args else str(exc)
            raise QgsProcessingException(str(message)) from None

    return run


class ClayAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set the class attributes and implement initAlgorithm, then either

    - `command` (and, as needed, `partial_outputs`, `load_results`, `worker_feedback`, `cancelled`): the
      algorithm runs `clay COMMAND ...` in the worker through the template `processAlgorithm` below, as
      QGIS's GdalAlgorithm runs `gdal_*` from `getConsoleCommands`; or
    - their own `processAlgorithm`, for work done in QGIS's process (loading, searching, rendering).

    Either way their errors go through `reported_once`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "processAlgorithm" in cls.__dict__:
            setattr(cls, "processAlgorithm", reported_once(cls.__dict__["processAlgorithm"]))  # noqa: B010 - mypy: a method

    temporaries: contextlib.ExitStack  # during a worker run: what `command` made that goes when the run ends
    algorithm_id = ""  # without the provider prefix, e.g. "embed"
    display_name = ""
    group_id = "embeddings"
    group_name = "Embeddings"
    help_text = ""

    def name(self) -> str:
        return self.algorithm_id

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.display_name

    def group(self) -> str:
        return self.group_name

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return self.group_id

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.help_text

    def createInstance(self) -> ClayAlgorithm:  # noqa: N802 - QGIS API
        return type(self)()

    def asPythonCommand(self, parameters, context) -> str:  # noqa: N802 - QGIS API
        """The command Processing's history records for a run (and "Copy as Python command"): a layer whose
        data source holds a password or a token is written without it. The run itself gets the source whole."""
        return redact(super().asPythonCommand(parameters, context))

    # -- shared parameters -------------------------------------------------------------------------
    DEVICE = "DEVICE"
    MODEL = "MODEL"
    CHECKPOINT = "CHECKPOINT"
    LEVEL = "LEVEL"
    CHIP_SIZE = "CHIP_SIZE"
    STRIDE = "STRIDE"
    BATCH_SIZE = "BATCH_SIZE"
    WORKERS = "WORKERS"
    SATCLIP = "SATCLIP"
    # outputs of the embedding algorithms
    OUTPUT = "OUTPUT"
    OUTPUT_LAYER = "OUTPUT_LAYER"
    CHIPS = "CHIPS"

    def add_device_parameter(self) -> None:
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", options=DEVICE_OPTIONS, defaultValue=0))

    def device_value(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        return DEVICE_OPTIONS[self.parameterAsEnum(parameters, self.DEVICE, context)]

    def add_model_parameters(self) -> None:
        """A preset name, or a checkpoint file that overrides it (.ckpt / .pt / .safetensors)."""
        self.addParameter(
            QgsProcessingParameterEnum(
                self.MODEL,
                "Model architecture, random weights (used when no checkpoint is given: to try the pipeline)",
                options=MODEL_PRESETS,
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.CHECKPOINT,
                "Checkpoint file (optional, overrides the model)",
                optional=True,
                fileFilter="Checkpoints (*.ckpt *.pt *.pth *.safetensors);;All files (*)",
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(self.LEVEL, "Embedding level", options=LEVEL_OPTIONS, defaultValue=0)
        )

    def add_satclip_parameter(self) -> None:
        """Optional SatCLIP checkpoint: the output gains a `satclip` column (location embedding of each chip centre)."""
        self.addParameter(
            QgsProcessingParameterFile(
                self.SATCLIP,
                "SatCLIP checkpoint (optional: adds each chip centre's location embedding)",
                optional=True,
                fileFilter="SatCLIP checkpoints (*.ckpt);;All files (*)",
            )
        )

    def satclip_model_arguments(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        """The SatCLIP variant of model_arguments: a checkpoint file (CHECKPOINT) or a preset name typed into
        MODEL (a string parameter: SatCLIP presets are not in MODEL_PRESETS), exactly one of them."""
        checkpoint = self.checkpoint_arguments(parameters, context)
        preset = self.parameterAsString(parameters, self.MODEL, context).strip()
        if checkpoint and preset:
            raise QgsProcessingException("give either a SatCLIP checkpoint or a preset, not both")
        if preset:
            return ["--model", preset]
        if not checkpoint:
            raise QgsProcessingException("no model: choose a SatCLIP checkpoint (.ckpt)")
        return checkpoint

    def satclip_arguments(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        checkpoint = self.parameterAsFile(parameters, self.SATCLIP, context)
        if not checkpoint:
            return []
        if not Path(checkpoint).is_file():
            raise QgsProcessingException(f"SatCLIP checkpoint file {checkpoint} does not exist")
        return ["--satclip", checkpoint]

    def add_chip_parameters(self) -> None:
        self.addParameter(
            QgsProcessingParameterNumber(
                self.CHIP_SIZE,
                "Chip size in pixels (0 = the model's own)",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.STRIDE,
                "Stride in pixels (0 = chip size, no overlap)",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=0,
                minValue=0,
            )
        )

    def add_run_parameters(self) -> None:
        """Device, batch size and data-loading workers: advanced, the defaults suit most machines."""
        self.add_device_parameter()
        batch = QgsProcessingParameterNumber(
            self.BATCH_SIZE,
            "Batch size (0 = automatic)",
            type=QgsProcessingParameterNumber.Type.Integer,
            defaultValue=0,
            minValue=0,
        )
        workers = QgsProcessingParameterNumber(
            self.WORKERS,
            "Data-loading worker processes (0 = read inline)",
            type=QgsProcessingParameterNumber.Type.Integer,
            defaultValue=2,
            minValue=0,
            maxValue=64,
        )
        for parameter in (batch, workers):
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(parameter)

    def checkpoint_arguments(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        """["--checkpoint", file] when CHECKPOINT is set (the file must exist), else []."""
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if not checkpoint:
            return []
        if not Path(checkpoint).is_file():
            raise QgsProcessingException(f"checkpoint file {checkpoint} does not exist")
        return ["--checkpoint", checkpoint]

    def model_arguments(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        arguments = self.checkpoint_arguments(parameters, context) or [
            "--model",
            MODEL_PRESETS[self.parameterAsEnum(parameters, self.MODEL, context)],
        ]
        level = LEVEL_OPTIONS[self.parameterAsEnum(parameters, self.LEVEL, context)]
        if level != LEVEL_OPTIONS[0]:
            arguments += ["--level", level]
        return arguments

    def chip_arguments(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        arguments = []
        for name, flag in ((self.CHIP_SIZE, "--chip-size"), (self.STRIDE, "--stride")):
            value = self.parameterAsInt(parameters, name, context)
            if value > 0:
                arguments += [flag, str(value)]
        return arguments

    def run_arguments(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        arguments = ["--device", self.device_value(parameters, context)]
        batch = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        if batch > 0:
            arguments += ["--batch-size", str(batch)]
        arguments += ["--workers", str(self.parameterAsInt(parameters, self.WORKERS, context))]
        return arguments

    # -- the template of the worker-backed algorithms ----------------------------------------------
    @reported_once
    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        """Parameters -> `command` -> the worker -> `load_results`. Temporaries the command made (through
        `self.temporaries`) go when the worker is done, however it ends; a cancelled run also removes what
        it wrote (`partial_outputs`); an input problem or a worker error leaves as one exception."""
        with contextlib.ExitStack() as temporaries:
            self.temporaries = temporaries
            arguments = self.command(parameters, context, feedback)
            folder, patterns = self.partial_outputs(parameters, context) or (None, [])
            try:
                result = self.run_worker_writing(arguments, self.worker_feedback(feedback), folder, patterns)
            except QgsProcessingException:
                if feedback is not None and feedback.isCanceled():
                    self.cancelled(feedback)
                raise
        return self.load_results(result, parameters, context, feedback)

    def command(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> list[str]:
        """The `clay` CLI arguments of this run (ClayInputError for bad input, before any work)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither command nor processAlgorithm")

    def partial_outputs(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[Path, list[str]] | None:
        """(folder, name patterns) of what a cancelled run must not leave behind; None: nothing to remove."""
        return None

    def worker_feedback(self, feedback: QgsProcessingFeedback) -> QgsProcessingFeedback:
        """The feedback the worker reports to (a wrapper may log more of the progress)."""
        return feedback

    def cancelled(self, feedback: QgsProcessingFeedback) -> None:
        """Called after a cancelled run's partial outputs are removed (e.g. to say what was kept)."""

    def load_results(
        self,
        result: dict[str, Any],
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """The algorithm's outputs from the worker's result (the default: the result as it is)."""
        return result

    # -- running clay_core out of process ----------------------------------------------------------
    def run_worker(self, arguments: list[str], feedback: QgsProcessingFeedback) -> dict[str, Any]:
        """Run `python -m clay_core ARGS --progress json` and return its result; errors become
        QgsProcessingException with the worker's own last error line."""
        try:
            return run_clay(arguments, feedback)
        except RuntimeMissingError as exc:
            notify_runtime_missing(str(exc))  # QGIS desktop: offer to set the runtime up
            raise QgsProcessingException(str(exc)) from exc
        except WorkerError as exc:
            raise QgsProcessingException(str(exc)) from exc

    def run_worker_writing(
        self, arguments: list[str], feedback: QgsProcessingFeedback, folder: Path | None, patterns: Iterable[str]
    ) -> dict[str, Any]:
        """Run a worker that writes into `folder`; on cancel remove what it created there matching `patterns`
        (the output, its resumable `.parts` folder, temporary files), so a cancelled run leaves nothing."""
        if folder is None:
            return self.run_worker(arguments, feedback)
        before = {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()
        try:
            return self.run_worker(arguments, feedback)
        except QgsProcessingException:
            if feedback is not None and feedback.isCanceled():
                remove_new_entries(folder, before, patterns)
            raise

    def load_embeddings_result(
        self, path: Path, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Load the file a worker wrote as a chips layer (added to the project when run from the GUI)."""
        from clay_qgis import layers
        from clay_qgis.vector_cache import load_embedding_set

        if not path.is_file():
            raise QgsProcessingException(f"the worker finished but {path} was not written")
        embedding_set = load_embedding_set(path, "chips")
        layer = layers.memory_layer(embedding_set, path.stem)
        feedback.pushInfo(f"{path}: {embedding_set.describe()}")
        layer_id = load_on_completion(layer, context, path.stem)
        return {self.OUTPUT: str(path), self.OUTPUT_LAYER: layer_id, self.CHIPS: layer.featureCount()}


def remove_new_entries(folder: Path, before: set[str], patterns: Iterable[str]) -> list[Path]:
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    patterns = list(patterns)
    for entry in folder.iterdir():
        if entry.name in before or not any(entry.match(pattern) for pattern in patterns):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def output_patterns(name: str) -> list[str]:
    """What an embed run writes for output `name`: the file, `name.parts/` and `.name.*.tmp` temp files."""
    return [name, f"{name}.parts", f".{name}.*"]


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Tags an output layer with its embeddings file (so the map tool finds the vectors) and styles it
    when Processing loads it into the project (GUI runs only)."""

    # Processing keeps only a raw pointer, so Python must keep the object alive until Processing has used it;
    # postProcessLayer (called once, when the layer is loaded) lets go, so the scores it holds are freed.
    instances: list[StyleOnLoad] = []

    def __init__(self, embeddings_path: str, mode: str, scored: dict[str, Any] | None = None, styler=None) -> None:
        super().__init__()
        self.embeddings_path = embeddings_path
        self.mode = mode
        self.scored = scored
        self.styler = styler  # optional callable(layer): its own renderer (clusters, change)
        StyleOnLoad.instances.append(self)

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 - QGIS API
        # The caller holds its own reference for the duration of this call, so dropping ours is safe here.
        if self in StyleOnLoad.instances:
            StyleOnLoad.instances.remove(self)
        if not isinstance(layer, QgsVectorLayer):
            return
        from clay_qgis import layers, style
        from clay_qgis.schema import SIMILARITY

        layer.setCustomProperty(layers.PATH_PROPERTY, self.embeddings_path)
        layer.setCustomProperty(layers.MODE_PROPERTY, self.mode)
        if self.styler is not None:
            self.styler(layer)
        elif self.scored:
            style.style_similarity(
                layer,
                self.scored["scores"],
                threshold=self.scored.get("threshold"),
                top_k=self.scored.get("top_k", 10),
                has_negatives=self.scored.get("has_negatives", False),
                field=self.scored.get("field", SIMILARITY),
            )
        else:
            style.style_chip_grid(layer)
        from clay_qgis.gui.dock import keep_legend_expanded  # a no-op without the desktop's Layers panel

        keep_legend_expanded(layer)


def load_on_completion(layer: QgsVectorLayer, context: QgsProcessingContext, name: str) -> str:
    """Hand an in-memory layer to Processing: kept in the context, added to the project when the run ends
    in the GUI; returns the layer id for the algorithm's output."""
    context.temporaryLayerStore().addMapLayer(layer)
    details = QgsProcessingContext.LayerDetails(name, context.project(), name)
    context.addLayerToLoadOnCompletion(layer.id(), details)
    return layer.id()


def make_output_folder(folder: Path) -> None:
    """Create the output's folder (QGIS offers any path); a path through a file, or no permission, is an input
    problem with one line, not a crash."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ClayInputError(
            f"cannot create the output folder {folder} ({error.strerror}): choose another file name"
        ) from None
