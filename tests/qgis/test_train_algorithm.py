"""clay:train through processing.run: real worker runs of the tiny preset on a chip folder and on a
raster layer over an extent, loss per step in the log, the checkpoint fed to clay:embed, cancel and
resume, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clay_core.models.preset_table import TRAINABLE_PRESETS
from clay_core.parquet import read_embeddings
from tests.helpers.chips import UTM_ORIGIN, write_band_raster, write_chip_folder
from tests.helpers.qgis import run

SMALL = {
    "PRESET": TRAINABLE_PRESETS.index("clay-v0-tiny"),
    "IMAGE_SIZE": 32,
    "PATCH_SIZE": 8,
    "BATCH_SIZE": 2,
    "LEARNING_RATE": 1e-3,
    "DEVICE": 1,
}  # DEVICE 1 = cpu
CHIP_FILE_PX = 40  # the training chips: a random 32 px crop of each per step


def recording_feedback():
    from qgis.core import QgsProcessingFeedback

    class Recording(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.infos: list[str] = []

        def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS API
            self.infos.append(info)
            super().pushInfo(info)

    return Recording()


def test_train_on_a_chip_folder_logs_each_loss_and_feeds_embed(clay_provider, tmp_path: Path) -> None:
    from qgis.core import QgsRasterLayer

    chips = write_chip_folder(tmp_path / "chips", count=4, size=CHIP_FILE_PX)
    output = tmp_path / "out" / "mine.ckpt"
    feedback = recording_feedback()
    result = run(
        "clay:train",
        {**SMALL, "CHIP_FOLDER": str(chips), "STEPS": 4, "CHECKPOINT_EVERY": 2, "OUTPUT": str(output)},
        feedback,
    )
    assert result["OUTPUT"] == str(output) and result["STEPS_DONE"] == 4
    assert Path(result["LOSS_PLOT"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = [line for line in feedback.infos if line.startswith("step ")]
    assert steps and steps[-1].startswith("step 4/4 | loss ")  # the last step is always reported
    saved = torch.load(output, weights_only=True)
    assert saved["global_step"] == 4 and saved["hyper_parameters"]["image_size"] == 32
    assert result["FINAL_LOSS"] == pytest.approx(sum(saved["clay_train"]["losses"]) / 4, rel=1e-4)

    # The trained checkpoint is what clay:embed's Checkpoint parameter takes.
    embed_px = saved["hyper_parameters"]["image_size"]
    layer = QgsRasterLayer(str(next(chips.glob("claytile_*.tif"))), "chip", "gdal")
    embedded = run(
        "clay:embed",
        {
            "INPUT": [layer],
            "CHECKPOINT": result["OUTPUT"],
            "CHIP_SIZE": embed_px,
            "BAND_MAP": "B02=1,B03=2,B04=3,B08=7",
            "DATE": "2020-06-01",
            "DEVICE": 1,
            "WORKERS": 0,
            "OUTPUT": str(tmp_path / "embedded.gpq"),
        },
    )
    table = read_embeddings(embedded["OUTPUT"])
    # The chip file holds whole embed chips only in its top-left corner; the grid's partial chips past its edge
    # are mostly outside it (more nodata than the default --max-nodata 0.5 allows) and are skipped.
    assert CHIP_FILE_PX % embed_px < embed_px / 2
    whole = CHIP_FILE_PX // embed_px
    assert len(table) == embedded["CHIPS"] == whole * whole
    cells = zip(table.table.column("row").to_pylist(), table.table.column("col").to_pylist(), strict=True)
    assert sorted(cells) == [(row, col) for row in range(whole) for col in range(whole)]
    assert table.vectors.shape[1] == 256  # clay-v0-tiny's width, mean level
    assert table.metadata["checkpoint"] == "mine.ckpt" and table.metadata["config"]["image_size"] == 32


def test_train_on_a_raster_layer_over_an_extent(clay_provider, tmp_path: Path) -> None:
    from qgis.core import QgsRasterLayer

    raster = write_band_raster(tmp_path / "scene.tif", size=96)
    layer = QgsRasterLayer(str(raster), "scene", "gdal")
    x0, y0 = UTM_ORIGIN
    side_m = 640.0  # inside the 960 m raster
    extent = f"{x0},{x0 + side_m},{y0 - side_m},{y0} [EPSG:32633]"
    output = tmp_path / "raster.ckpt"
    result = run("clay:train", {**SMALL, "RASTERS": [layer], "EXTENT": extent, "STEPS": 2, "OUTPUT": str(output)})
    assert result["STEPS_DONE"] == 2
    saved = torch.load(output, weights_only=True)
    per_side = side_m / 10.0 / SMALL["IMAGE_SIZE"]  # 10 m pixels, chips of the model's image size
    assert per_side.is_integer()
    assert saved["clay_train"]["data"]["items"] == per_side**2
    assert saved["clay_train"]["settings"]["source_options"]["chip_size"] == 32


def test_cancel_keeps_the_last_checkpoint_and_resume_continues_it(clay_provider, tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    chips = write_chip_folder(tmp_path / "chips", count=3, size=32)
    output = tmp_path / "out" / "cancelled.ckpt"
    parameters = {**SMALL, "CHIP_FOLDER": str(chips), "CHECKPOINT_EVERY": 1, "OUTPUT": str(output)}
    feedback = recording_feedback()
    original = feedback.pushInfo

    def cancel_after_two_steps(info: str) -> None:
        original(info)
        if info.startswith("step ") and int(info.split()[1].split("/")[0]) >= 2:  # progress is throttled
            feedback.cancel()

    feedback.pushInfo = cancel_after_two_steps
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run("clay:train", {**parameters, "STEPS": 100000}, feedback)
    assert [p.name for p in output.parent.iterdir() if p.name.startswith(".")] == []  # no temporaries
    saved = torch.load(output, weights_only=True)  # a whole checkpoint of a step the run got to
    assert saved["global_step"] >= 1
    assert any("tick Resume" in line for line in feedback.infos)

    resumed = run("clay:train", {**parameters, "STEPS": saved["global_step"] + 1, "RESUME": True})
    assert resumed["STEPS_DONE"] == saved["global_step"] + 1
    losses = torch.load(output, weights_only=True)["clay_train"]["losses"]
    assert losses[:-1] == saved["clay_train"]["losses"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, "nothing to train on"),
        ({"CHIP_FOLDER": "/no/such/folder"}, "does not exist"),
        (
            {"CHECKPOINT": "/no/such.ckpt", "CHIP_FOLDER": "{chips}"},
            "checkpoint file /no/such.ckpt does not exist",
        ),
        ({"CHIP_FOLDER": "{chips}", "RESUME": True}, "nothing to resume"),
    ],
)
def test_bad_input_is_one_clear_line(clay_provider, tmp_path: Path, change: dict, message: str) -> None:
    from qgis.core import QgsProcessingException

    chips = write_chip_folder(tmp_path / "chips", count=1, size=32)
    parameters = {**SMALL, "STEPS": 1, "OUTPUT": str(tmp_path / "x.ckpt")}
    parameters.update(
        {key: value.format(chips=chips) if isinstance(value, str) else value for key, value in change.items()}
    )
    with pytest.raises(QgsProcessingException, match=message) as error:
        run("clay:train", parameters)
    assert "\n" not in str(error.value).strip()
    assert not (tmp_path / "x.ckpt").exists()
