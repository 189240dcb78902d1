"""`clay embed` and `clay embed-mgrs`: outputs, exit codes, JSON results, dry run, kill -9 + resume, Dask."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from clay_core.cli import main
from clay_core.embed_parts import parts_dir_for
from clay_core.grid.mgrs import parse_tile
from clay_core.parquet import read_embeddings
from tests.helpers.cli import events_of, json_events, result_of, run_clay, start_clay
from tests.helpers.footprints import assert_chips_are_pixel_blocks
from tests.helpers.s3 import s3_bucket, s3_server  # noqa: F401  (fixtures)

CHIP = 64  # px; the tiny model is resized to it with --chip-size
TINY = ["--model", "clay-v0-tiny", "--chip-size", str(CHIP), "--device", "cpu"]


def write_scene(folder: Path, width: int = 256, height: int = 128, date: str = "20200101") -> Path:
    """Per-band GeoTIFFs of a Sentinel-2-like scene at the top-left corner of tile 33UUU (10 m, uint16 DN)."""
    tile = parse_tile("33UUU")
    x0, y0 = tile.origin
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for band in ("B02", "B03", "B04", "B08"):
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": "uint16",
            "crs": f"EPSG:{tile.epsg}",
            "transform": Affine(10.0, 0, x0, 0, -10.0, y0),
            "nodata": 0,
        }
        with rasterio.open(folder / f"T33UUU_{date}T101010_{band}.tif", "w", **profile) as dst:
            dst.write(rng.integers(1, 4000, (1, height, width), dtype=np.uint16))
    return folder


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return write_scene(tmp_path_factory.mktemp("scene") / "S2")


def test_embed_writes_geoparquet_on_the_scene_grid(scene, tmp_path, capsys):
    out = tmp_path / "out.gpq"
    code = main(
        [
            "--progress",
            "json",
            "embed",
            str(scene),
            "-o",
            str(out),
            *TINY,
            "--level",
            "patch",
            "--workers",
            "1",
            "--batch-size",
            "3",
        ]
    )
    events = json_events(capsys.readouterr().out)
    assert code == 0, events
    result = result_of(events)
    assert result["output"] == str(out)
    summary = result["summary"]
    assert summary["chips_written"] == 8 and summary["chips_total"] == 8 and summary["chips_failed"] == 0
    assert {"read_wait_s", "model_s", "write_s", "chips_per_s"} <= set(summary)
    assert any(e["event"] == "progress" and e["done"] == 8 for e in events)
    table = read_embeddings(out)
    assert table.shape_per_row == (2, 2, 256)
    # Every chip's footprint is exactly a 64 x 64 block of the raster's pixel grid, on the scene's chip grid.
    offsets = assert_chips_are_pixel_blocks(table, next(scene.glob("*_B02.tif")), CHIP, 32633)
    assert all(col % CHIP == 0 and row % CHIP == 0 for col, row in offsets), offsets


def test_embed_raster_with_bbox_and_band_map(scene, tmp_path, capsys):
    """Any raster + an AOI in lon/lat: chips on the AOI's UTM grid; explicit band mapping by file name."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    west, south = to_lonlat.transform(300200, 5899040)
    east, north = to_lonlat.transform(302400, 5899840)
    out = tmp_path / "aoi.gpq"
    code = main(
        [
            "--progress",
            "json",
            "embed",
            str(scene),
            "-o",
            str(out),
            *TINY,
            "--workers",
            "0",
            "--bbox",
            f"{west},{south},{east},{north}",
            "--band-map",
            ",".join(f"{b}=T33UUU_20200101T101010_{b}" for b in ("B04", "B03", "B02")),
        ]
    )
    events = json_events(capsys.readouterr().out)
    assert code == 0, events
    table = read_embeddings(out)
    assert len(table) == 4 * 2  # the 2200 x 800 m AOI (a bit more once through lon/lat) in 640 m chips
    assert table.metadata["source_bands"] == ["B02", "B03", "B04"]
    assert "B08" in table.table.column("filled_bands").to_pylist()[0]
    boxes = np.array(table.table.column("utm_bbox").to_pylist())
    assert (boxes[:, 2] - boxes[:, 0] == CHIP * 10.0).all() and (boxes[:, 3] - boxes[:, 1] == CHIP * 10.0).all()
    # the chips start at the AOI's west edge and together cover it
    assert boxes[:, 0].min() == pytest.approx(300200, abs=1e-6) and boxes[:, 2].max() >= 302400
    assert boxes[:, 1].min() <= 5899040 and boxes[:, 3].max() >= 5899840


def test_dry_run_estimates_and_writes_nothing(scene, tmp_path, capsys):
    out = tmp_path / "out.gpq"
    assert main(["--progress", "json", "embed", str(scene), "-o", str(out), *TINY, "--dry-run"]) == 0
    result = result_of(json_events(capsys.readouterr().out))
    assert result["dry_run"] and result["chips"] == 8
    assert result["estimated_seconds"] > 0 and result["estimated_bytes"] > 8 * 256 * 4 * 0.5
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("progress", ["none", "bar"])
def test_a_dry_run_prints_its_estimate_whatever_the_progress_mode(scene, tmp_path, capsys, progress):
    out = tmp_path / "out.gpq"
    assert main(["--progress", progress, "embed", str(scene), "-o", str(out), *TINY, "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("8 chips; estimated ")], printed
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-nodata", "2"], "max-nodata"),
        (["--band-map", "B04"], "band-map"),
        (["--batch-size", "0"], "batch-size"),
        (["--level", "cls"], "level"),
    ],
)
def test_bad_input_exits_2_with_one_line(scene, tmp_path, capsys, extra, message):
    code = main(["embed", str(scene), "-o", str(tmp_path / "o.gpq"), *TINY, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and err[-1].startswith("clay: error:")


def test_missing_model_missing_source_and_existing_output_exit_2(scene, tmp_path, capsys):
    assert main(["embed", str(scene), "-o", str(tmp_path / "o.gpq")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "nothing"), "-o", str(tmp_path / "o.gpq"), *TINY]) == 2
    capsys.readouterr()
    existing = tmp_path / "exists.gpq"
    existing.write_bytes(b"precious")
    assert main(["embed", str(scene), "-o", str(existing), *TINY]) == 2
    assert "already exists" in capsys.readouterr().err
    assert existing.read_bytes() == b"precious"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Fixed weights: a preset is randomly initialised in every process, a checkpoint is the same in all."""
    import torch

    from clay_core.models import build_preset

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(build_preset("clay-v0-tiny").state_dict(), path)
    return path


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_completes_without_duplicates(tmp_path, tiny_checkpoint):
    """kill -9 the whole job (reader processes included) in the middle, re-run: every chip exactly once."""
    # 256 chips in 128 parts, killed once 3 parts exist: the kill lands far from the end of the job, so neither
    # "finished between two polls" nor "killed after the last part" can happen on a loaded machine.
    big = write_scene(tmp_path / "S2", width=1024, height=1024)
    out = tmp_path / "out.gpq"
    model = ["--checkpoint", str(tiny_checkpoint), "--chip-size", str(CHIP), "--device", "cpu"]
    args = ["--progress", "json", "embed", str(big), "-o", str(out), *model, "--batch-size", "2", "--part-chips", "2"]
    args += ["--workers", "1", "--level", "mean"]
    job = start_clay(*args, stdout=subprocess.DEVNULL, start_new_session=True)
    parts = parts_dir_for(out)
    deadline = time.monotonic() + 240
    while len(list(parts.glob("part-*.parquet"))) < 3:
        assert job.poll() is None, f"job ended before it could be killed: {job.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no part files appeared"
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    assert not out.exists()
    settled_before = len(list(parts.glob("part-*.parquet")))
    assert settled_before >= 3  # whatever else settled before the kill is resumed, not redone

    rerun = run_clay(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = result_of(json_events(rerun.stdout))["summary"]
    assert summary["chips_resumed"] >= 2 * settled_before and summary["chips_written"] == 256
    assert not parts.exists()
    result = read_embeddings(out)
    assert len(result.chip_ids) == len(set(result.chip_ids)) == 256

    reference = tmp_path / "reference.gpq"
    assert (
        main(
            [
                "--progress",
                "none",
                "embed",
                str(big),
                "-o",
                str(reference),
                *model,
                "--workers",
                "0",
                "--batch-size",
                "8",
                "--level",
                "mean",
            ]
        )
        == 0
    )
    expected = read_embeddings(reference)
    order = {cid: i for i, cid in enumerate(expected.chip_ids)}
    assert sorted(result.chip_ids, key=order.__getitem__) == expected.chip_ids
    rows = [order[cid] for cid in result.chip_ids]
    np.testing.assert_allclose(result.vectors, expected.vectors[rows], rtol=1e-4, atol=1e-4)


def embed_mgrs_args(
    tiles: list[str], source: str, out: Path, *extra: str, start: str = "2021-06-01", end: str = "2021-06-30"
) -> list[str]:
    """`clay --progress json embed-mgrs` of `tiles` with the tiny model; `extra` are further options."""
    dates = ["--start", start, "--end", end]
    return ["--progress", "json", "embed-mgrs", *tiles, "--source", source, *dates, "-o", str(out), *TINY, *extra]


def _chip_tile(folder: Path, mgrs: str, dates: list[str]) -> None:
    from tests.helpers.chips import write_chip

    for i, date in enumerate(dates):
        write_chip(folder / mgrs / date, mgrs=mgrs, date=date, row=1, col=i, counter=i, seed=i, size=CHIP)


def test_embed_mgrs_names_files_like_clay_and_skips_out_of_range(tmp_path, capsys):
    chips = tmp_path / "tiles"
    _chip_tile(chips, "33UUU", ["2021-06-01", "2021-07-15", "2022-01-01"])
    out = tmp_path / "out"
    out.mkdir()
    code = main(
        embed_mgrs_args(["33UUU"], str(chips / "{mgrs}"), out, "--workers", "0", start="2021-01-01", end="2021-12-31")
    )
    events = json_events(capsys.readouterr().out)
    assert code == 0, events
    result = result_of(events)
    assert [Path(p).name for p in result["outputs"]] == ["33UUU_20210601_20210715_v001.gpq"]
    table = read_embeddings(result["outputs"][0])
    assert sorted(d.isoformat() for d in table.table.column("date").to_pylist()) == ["2021-06-01", "2021-07-15"]
    assert table.metadata["mgrs"] == "33UUU"
    assert main(embed_mgrs_args(["33UUU"], str(chips / "{mgrs}"), out, start="2021-12-31", end="2021-01-01")) == 2


@pytest.mark.slow
def test_embed_mgrs_on_a_local_dask_cluster(tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    chips = tmp_path / "tiles"
    _chip_tile(chips, "33UUU", ["2021-06-01", "2021-06-02"])
    _chip_tile(chips, "32UPU", ["2021-06-03"])
    out = tmp_path / "out"
    out.mkdir()
    code = main(
        embed_mgrs_args(
            ["33UUU", "32UPU", "31UFT"],
            str(chips / "{mgrs}"),
            out,
            "--dask-workers",
            "2",
            "--workers",
            "1",
            "--threads",
            "1",
        )
    )
    events = json_events(capsys.readouterr().out)
    assert code == 2, events  # a tile failed for an input reason: not a success, but the others are kept
    result = result_of(events)
    assert sorted(Path(p).name for p in result["outputs"]) == [
        "32UPU_20210603_20210603_v001.gpq",
        "33UUU_20210601_20210602_v001.gpq",
    ]
    assert result["failed_tiles"] == ["31UFT"]  # no chips there: reported, the others went on
    assert read_embeddings(out / "33UUU_20210601_20210602_v001.gpq").vectors.shape == (2, 256)
    assert (
        datetime.date(2021, 6, 3)
        in read_embeddings(out / "32UPU_20210603_20210603_v001.gpq").table.column("date").to_pylist()
    )


def test_embed_mgrs_from_s3_like_the_seed_layout_with_a_corrupt_chip(tmp_path, s3_bucket, capsys):  # noqa: F811
    """`s3://clay-tiles-02/02/{MGRS}/{date}/claytile_*.tif` through the S3 protocol (moto on 127.0.0.1):
    a truncated chip is reported with its reason and the others are embedded; the run exits 2 (not everything
    asked was done) and lists the failure beside the output."""
    chips = tmp_path / "tiles"
    _chip_tile(chips, "33UUU", ["2021-06-01", "2021-06-02", "2021-06-03"])
    broken = sorted((chips / "33UUU" / "2021-06-03").glob("*.tif"))[0]
    broken.write_bytes(broken.read_bytes()[:600])  # truncated upload
    prefix = s3_bucket.upload_dir(chips, "02")
    out = tmp_path / "out"
    out.mkdir()
    code = main(embed_mgrs_args(["33UUU"], prefix + "/{mgrs}", out, "--workers", "1"))
    events = json_events(capsys.readouterr().out)
    assert code == 2, events
    tile = result_of(events)["tiles"][0]
    summary = tile["summary"]
    assert summary["chips_written"] == 2 and summary["chips_failed"] == 1
    sidecar = json.loads(Path(tile["output"] + ".failures.json").read_text())
    assert [f["chip_id"] for f in sidecar["failures"]] == [summary["problems"][0]["chip_id"]]
    assert events_of(events, "error")[-1]["kind"] == "input"
    assert broken.name in summary["problems"][0]["source_url"] or broken.name in summary["problems"][0]["reason"]
    assert Path(tile["output"]).name == "33UUU_20210601_20210603_v001.gpq"
    urls = read_embeddings(tile["output"]).table.column("source_url").to_pylist()
    assert all(url.startswith(prefix + "/33UUU/") for url in urls)
    assert any(e["event"] == "log" and e["level"] == "warning" and "skipped chip" in e["message"] for e in events)


# ----------------------------------------------------------------------------------------------
# Clay v1.5 (micro fixture) on the real BigEarthNet patch, and the opt-in SatCLIP column
# ----------------------------------------------------------------------------------------------

BEN_PATCH = "S2A_MSIL2A_20170617T113321_36_85"
BEN_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


@pytest.fixture(scope="module")
def bigearthnet(sample_data) -> Path:
    folder = sample_data / "bigearthnet" / BEN_PATCH
    if not folder.is_dir():
        pytest.skip(f"BigEarthNet sample missing at {folder}")
    return folder


def satclip_of_bboxes(table, checkpoint: Path) -> np.ndarray:
    """SatCLIP of the centres of the rows' UTM footprints, computed independently of the pipeline."""
    from pyproj import Transformer

    from clay_core.models.satclip import satclip_embed_lonlat

    centres = []
    for epsg, (xmin, ymin, xmax, ymax) in zip(
        table.column("epsg").to_pylist(), table.column("utm_bbox").to_pylist(), strict=True
    ):
        centres.append(Transformer.from_crs(epsg, 4326, always_xy=True).transform((xmin + xmax) / 2, (ymin + ymax) / 2))
    return satclip_embed_lonlat(np.array(centres), str(checkpoint))


@pytest.mark.parametrize(("level", "row_shape"), [("cls", (64,)), ("patch", (8, 8, 64))])
def test_clay_v15_embeds_the_bigearthnet_patch_with_a_satclip_column(
    bigearthnet, shared_fixtures, tmp_path, capsys, level, row_shape
):
    pytest.importorskip("geopandas")
    import geopandas

    satclip = shared_fixtures / "satclip_l10_micro" / "checkpoint.ckpt"
    out = tmp_path / "ben.gpq"
    code = main(
        [
            "--progress",
            "json",
            "embed",
            str(bigearthnet),
            "-o",
            str(out),
            "--checkpoint",
            str(shared_fixtures / "clay_v15_micro" / "checkpoint.ckpt"),
            "--level",
            level,
            "--chip-size",
            "64",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--satclip",
            str(satclip),
        ]
    )
    events = json_events(capsys.readouterr().out)
    assert code == 0, events
    data = read_embeddings(out)
    assert len(data) > 0 and data.shape_per_row == row_shape and np.isfinite(data.vectors).all()
    meta = data.metadata
    assert meta["family"] == "clay-v1.5" and meta["level"] == level and meta["platform"] == "sentinel-2-l2a"
    assert meta["bands"] == BEN_BANDS and meta["filled_bands"] == []  # B01/B09 files are not Clay bands
    assert set(data.table.column("epsg").to_pylist()) == {32629}
    assert meta["satclip"]["legendre_polys"] == 10
    np.testing.assert_allclose(data.satclip, satclip_of_bboxes(data.table, satclip), rtol=0, atol=1e-12)
    frame = geopandas.read_parquet(out)
    assert len(frame) == len(data) and frame.crs.to_string() == "OGC:CRS84"


def test_clay_v15_embeds_a_four_band_subset_without_filling(bigearthnet, shared_fixtures, tmp_path, capsys):
    four = [str(bigearthnet / f"{BEN_PATCH}_{band}.tif") for band in ("B02", "B03", "B04", "B08")]
    checkpoint = str(shared_fixtures / "clay_v15_micro" / "checkpoint.ckpt")
    outputs = {}
    for name, sources in (("four", four), ("all", [str(bigearthnet)])):
        outputs[name] = tmp_path / f"{name}.gpq"
        code = main(
            [
                "--progress",
                "none",
                "embed",
                *sources,
                "-o",
                str(outputs[name]),
                "--checkpoint",
                checkpoint,
                "--level",
                "cls",
                "--chip-size",
                "64",
                "--device",
                "cpu",
                "--workers",
                "0",
            ]
        )
        assert code == 0, capsys.readouterr().err
    four_bands, all_bands = read_embeddings(outputs["four"]), read_embeddings(outputs["all"])
    meta = four_bands.metadata
    assert meta["bands"] == ["B02", "B03", "B04", "B08"] and meta["wavelengths_um"] == [0.493, 0.56, 0.665, 0.842]
    assert meta["filled_bands"] == [] and all(f == [] for f in four_bands.table.column("filled_bands").to_pylist())
    assert four_bands.shape_per_row == (64,) and four_bands.chip_ids == all_bands.chip_ids
    # Nothing filled in: four bands give other embeddings than ten (filling would not reach the model at all).
    assert not np.allclose(four_bands.vectors, all_bands.vectors, atol=1e-3)


def test_embed_mgrs_adds_the_satclip_column(shared_fixtures, tmp_path, capsys):
    satclip = shared_fixtures / "satclip_l10_micro" / "checkpoint.ckpt"
    chips = tmp_path / "tiles"
    _chip_tile(chips, "33UUU", ["2021-06-01", "2021-07-15"])
    out = tmp_path / "out"
    out.mkdir()
    code = main(
        embed_mgrs_args(
            ["33UUU"],
            str(chips / "{mgrs}"),
            out,
            "--workers",
            "0",
            "--satclip",
            str(satclip),
            start="2021-01-01",
            end="2021-12-31",
        )
    )
    events = json_events(capsys.readouterr().out)
    assert code == 0, events
    data = read_embeddings(result_of(events)["outputs"][0])
    assert data.metadata["satclip"]["checkpoint"] == "checkpoint.ckpt"
    np.testing.assert_allclose(data.satclip, satclip_of_bboxes(data.table, satclip), rtol=0, atol=1e-12)


def test_satclip_option_that_is_not_satclip_exits_2(scene, shared_fixtures, tmp_path, capsys):
    out = tmp_path / "o.gpq"
    code = main(
        [
            "embed",
            str(scene),
            "-o",
            str(out),
            *TINY,
            "--satclip",
            str(shared_fixtures / "clay_v15_micro" / "checkpoint.ckpt"),
        ]
    )
    assert code == 2 and "not a SatCLIP" in capsys.readouterr().err
    assert not out.exists()


def test_embed_mgrs_goes_on_after_a_crashed_tile_and_exits_1(tmp_path, capsys, monkeypatch):
    """The in-process path treats a crash like the Dask path: reported per tile, the others still run."""
    import clay_core.embed_tiles as embed_tiles

    chips = tmp_path / "tiles"
    _chip_tile(chips, "33UUU", ["2021-06-01"])
    _chip_tile(chips, "32UPU", ["2021-06-03"])
    out = tmp_path / "out"
    out.mkdir()
    real_job = embed_tiles.tile_embed_job

    def crash_on_33uuu(job, tile):
        if tile == "33UUU":
            raise RuntimeError("disk on fire")
        return real_job(job, tile)

    monkeypatch.setattr(embed_tiles, "tile_embed_job", crash_on_33uuu)
    code = main(embed_mgrs_args(["33UUU", "32UPU"], str(chips / "{mgrs}"), out, "--workers", "0"))
    result = result_of(json_events(capsys.readouterr().out))
    assert code == 1
    assert result["failed_tiles"] == ["33UUU"]
    assert [Path(p).name for p in result["outputs"]] == ["32UPU_20210603_20210603_v001.gpq"]
    assert "RuntimeError: disk on fire" in result["tiles"][0]["error"]


def test_embed_mgrs_hands_tasks_an_absolute_checkpoint(tmp_path, monkeypatch, tiny_checkpoint):
    import clay_core.embed_tiles as embed_tiles

    seen = []
    monkeypatch.setattr(embed_tiles, "embed_tiles", lambda tiles, job, **kw: seen.append(job) or [])
    monkeypatch.chdir(tiny_checkpoint.parent)
    out = tmp_path / "out"
    out.mkdir()
    common = ["embed-mgrs", "33UUU", "--source", "d", "--start", "2021-06-01", "--end", "2021-06-30", "-o", str(out)]
    assert main([*common, "--checkpoint", tiny_checkpoint.name]) == 0
    assert seen[-1].checkpoint == str(tiny_checkpoint.absolute())
    assert main([*common, "--model", "clay-v0-tiny"]) == 0
    assert seen[-1].checkpoint is None and seen[-1].preset == "clay-v0-tiny"


def test_embed_mgrs_dates_are_input_errors(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert (
        main(["embed-mgrs", "33UUU", "--source", "d", "--start", "June", "--end", "2021-06-30", "-o", str(out), *TINY])
        == 2
    )
    assert "--start 'June' is not a date" in capsys.readouterr().err


def test_embed_raster_at_another_resolution(scene, tmp_path, capsys):
    """--resolution sets the chips' metres per pixel (a layer fetched from QGIS at 20 m is chipped at 20 m)."""
    out = tmp_path / "coarse.gpq"
    x0, y0 = parse_tile("33UUU").origin
    code = main(
        [
            "--progress",
            "json",
            "embed",
            str(scene / "T33UUU_20200101T101010_B04.tif"),
            "-o",
            str(out),
            *TINY,
            "--workers",
            "0",
            "--bbox",
            f"{x0},{y0 - 1280},{x0 + 2560},{y0}",
            "--bbox-crs",
            "32633",
            "--resolution",
            "20",
        ]
    )
    assert code == 0, capsys.readouterr()
    data = read_embeddings(out)
    assert len(data) == 2
    for xmin, ymin, xmax, ymax in data.table.column("utm_bbox").to_pylist():
        assert (xmax - xmin, ymax - ymin) == (CHIP * 20.0, CHIP * 20.0)


@pytest.mark.parametrize("value", ["0", "-10", "nan"])
def test_embed_refuses_a_resolution_that_is_not_positive(scene, tmp_path, capsys, value):
    code = main(["embed", str(scene), "-o", str(tmp_path / "x.gpq"), *TINY, "--resolution", value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "must be a positive number of metres per pixel" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("relative", "kind"),
    [("S2", "scene folder"), ("S2/T33UUU_20200101T101010_B04.tif", "raster file"), ("S2/../S2", "scene folder")],
)
def test_a_relative_source_is_written_as_an_absolute_path(scene, tmp_path, capsys, monkeypatch, relative, kind):
    """Clay's published files name each chip's source by an absolute URL: a path typed relative to the working
    folder is written absolute, so the row still leads to its pixels from anywhere."""
    x0, y0 = parse_tile("33UUU").origin
    monkeypatch.chdir(scene.parent)
    out = tmp_path / "relative.gpq"
    code = main(
        [
            "embed",
            relative,
            "-o",
            str(out),
            *TINY,
            "--workers",
            "0",
            "--bbox",
            f"{x0},{y0 - 640},{x0 + 640},{y0}",
            "--bbox-crs",
            "32633",
        ]
    )
    assert code == 0, capsys.readouterr()
    urls = set(read_embeddings(out).table.column("source_url").to_pylist())
    expected = scene if kind == "scene folder" else scene / "T33UUU_20200101T101010_B04.tif"
    assert urls == {str(expected)} and Path(urls.pop()).is_absolute()
    # the file metadata's list of what was given on the command line: absolute as well
    assert read_embeddings(out).metadata["sources"] == [os.path.abspath(scene.parent / relative)]
