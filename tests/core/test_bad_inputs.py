"""Every bad input and fault of the `clay` command: the right exit code, exactly one clear line on stderr (no
traceback, no library noise such as PROJ's "ERROR 1:" or torch's warnings), and every file that was there
before byte-identical afterwards (nothing written, nothing left behind).

The table (CASES) runs the CLI in this process (clay_core.cli.main) on tiny synthetic GeoTIFFs, the random
`clay-v0-tiny` preset and the committed fixture checkpoints; the tests after it cover what a table row
cannot: partial failure, damaged resume folders, a full disk, and (as subprocesses, where the process
boundary matters) kill -9 with the lock and two runs racing for one output.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clay_core.cli import main
from clay_core.embed_parts import parts_dir_for
from tests.helpers.bad_inputs import tree_digest, write_geotiff
from tests.helpers.cli import events_of, json_events, result_of, start_clay

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "clay-v0-demo.ckpt"
TINY = ["--model", "clay-v0-tiny", "--chip-size", "64", "--device", "cpu", "--workers", "0"]
# Resuming needs the same weights in every run: the committed demo checkpoint (a preset's are random per process).
DEMO_RUN = ["--checkpoint", str(DEMO), "--chip-size", "64", "--device", "cpu", "--workers", "0"]


@dataclass(frozen=True)
class World:
    """Inputs and pre-existing outputs shared by every case (made once; no case may change them)."""

    root: Path

    def __truediv__(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory, satclip_checkpoint) -> World:
    root = tmp_path_factory.mktemp("bad-inputs")
    write_geotiff(root / "good.tif")
    write_geotiff(root / "good_copy.tif", seed=1)
    write_geotiff(root / "small.tif", width=20, height=20)
    write_geotiff(root / "nodata.tif", nodata=0, fill=0)
    write_geotiff(root / "nocrs.tif", crs=None)
    write_geotiff(root / "zone34_B08.tif", bands=("B08",), crs="EPSG:32634", origin=(300000.0, 5000000.0))
    write_geotiff(root / "zone34.tif", crs="EPSG:32634", origin=(300000.0, 5000000.0))
    good = (root / "good.tif").read_bytes()
    (root / "truncated.tif").write_bytes(good[: len(good) // 4])
    (root / "garbage.tif").write_bytes(b"not a raster\n" * 20)
    (root / "empty_folder").mkdir()
    (root / "folder.gpq").mkdir()
    (root / "a_file.txt").write_text("a file, not a folder\n")
    (root / "out_blocked.gpq.parts").write_text("a file where the parts folder would go\n")
    readonly = root / "readonly"
    readonly.mkdir()
    (root / "empty.ckpt").write_bytes(b"")
    (root / "garbage.ckpt").write_bytes(b"\x00garbage" * 64)
    with open(root / "protocol5.ckpt", "wb") as handle:
        pickle.dump({"weights": [1.0, 2.0]}, handle, protocol=5)
    (root / "satclip.ckpt").write_bytes(Path(satclip_checkpoint).read_bytes())
    (root / "points.csv").write_text("lon,lat\n15.0,45.1\n")
    out = root / "out"
    out.mkdir()
    assert main(["--progress", "none", "embed", str(root / "good.tif"), "-o", str(out / "existing.gpq"), *TINY]) == 0
    table = pq.read_table(out / "existing.gpq")
    pq.write_table(table.slice(0, 0), out / "no_rows.gpq")
    (out / "scored.gpq").write_bytes(b"an earlier result that must survive\n")
    readonly.chmod(0o555)
    yield World(root)
    readonly.chmod(0o755)


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[World], list[str]]
    message: str  # a part of the one stderr line
    code: int = 2


def embed(*extra: str, source: str = "good.tif", output: str = "out/new.gpq") -> Callable[[World], list[str]]:
    return lambda w: ["embed", *(w / s for s in source.split("+")), "-o", w / output, *TINY, *extra]


def embed_with_model(*model: str, checkpoint: str | None = None) -> Callable[[World], list[str]]:
    """`clay embed good.tif -o out/new.gpq` with these model options instead of TINY; `checkpoint`: a file of the
    world, given first as `--checkpoint`."""
    return lambda w: [
        "embed",
        w / "good.tif",
        "-o",
        w / "out/new.gpq",
        *(["--checkpoint", w / checkpoint] if checkpoint else []),
        *model,
    ]


def similar(*extra: str, embeddings: str = "out/existing.gpq", output: str = "out/similar.gpq"):
    return lambda w: ["similar", w / embeddings, *extra, "-o", w / output]


def mgrs(*extra: str, tile: str = "33TWL", start: str = "2020-01-01", end: str = "2020-12-31", out: str = "out"):
    return lambda w: [
        "embed-mgrs",
        tile,
        "--source",
        w / "empty_folder",
        "--start",
        start,
        "--end",
        end,
        "-o",
        w / out,
        *TINY,
        *extra,
    ]


def locations(*extra: str, output: str = "out/points.gpq"):
    return lambda w: ["embed-locations", *extra, "-o", w / output]


CHIP = "good_20200101_000_000"

CASES = [
    # ---- numbers: refused before any work, the same bounds for every command -----------------------
    Case("embed chip size 0", embed("--chip-size", "0"), "--chip-size must be >= 1, got 0"),
    Case("embed negative chip size", embed("--chip-size", "-5"), "--chip-size must be >= 1, got -5"),
    Case("embed chip size not a number", embed("--chip-size", "abc"), "invalid int value: 'abc'"),
    Case("embed chip size not a patch multiple", embed("--chip-size", "48"), "multiple of patch_size 32"),
    Case("embed stride 0", embed("--stride", "0"), "--stride must be >= 1, got 0"),
    Case("embed batch size 0", embed("--batch-size", "0"), "--batch-size must be >= 1, got 0"),
    Case("embed negative workers", embed("--workers", "-1"), "--workers must be between 0 and 256, got -1"),
    Case("embed threads 0", embed("--threads", "0"), "--threads must be between 1 and 4096, got 0"),
    Case("embed max nodata above 1", embed("--max-nodata", "1.5"), "--max-nodata must be between 0 and 1"),
    Case("embed max nodata nan", embed("--max-nodata", "nan"), "--max-nodata must be a finite number"),
    Case("embed part chips 0", embed("--part-chips", "0"), "--part-chips must be >= 1, got 0"),
    # ---- places ---------------------------------------------------------------------------------------
    Case("embed bbox beyond the poles", embed("--bbox", "10,80,11,95"), "latitudes must lie in [-90, 90]"),
    Case("embed bbox longitude 200", embed("--bbox", "190,40,200,41"), "longitudes must lie in [-180, 180]"),
    Case("embed bbox inverted", embed("--bbox", "15.1,45.1,15.0,45.2"), "is empty or inverted"),
    Case("embed bbox three numbers", embed("--bbox", "15,45,16"), "must be four numbers W,S,E,N"),
    Case("embed bbox not finite", embed("--bbox", "nan,45,16,46"), "not a finite number"),
    Case("embed bbox west and south typed negative", embed("--bbox", "-10,-5,-9,-4"), "no raster coverage"),
    Case(
        "embed bbox crs unknown code",
        embed("--bbox", "15,45.1,15.01,45.15", "--bbox-crs", "EPSG:99999"),
        "--bbox-crs 'EPSG:99999' is not a CRS PROJ knows",
    ),
    Case(
        "embed bbox crs proj string",
        embed("--bbox", "15,45.1,15.01,45.15", "--bbox-crs", "+proj=foo"),
        "is not a CRS PROJ knows",
    ),
    Case("embed bbox crs empty", embed("--bbox", "15,45.1,15.01,45.15", "--bbox-crs", " "), "--bbox-crs is empty"),
    Case("embed bbox crs small number", embed("--bbox", "1,2,3,4", "--bbox-crs", "12"), "is not an EPSG code"),
    Case(
        "embed projected bbox off the raster",
        embed("--bbox", "0,0,1000,1000", "--bbox-crs", "EPSG:32633"),
        "no raster coverage",
    ),
    Case(
        "embed degrees given for a bbox in metres",
        embed("--bbox", "15,45.1,15.01,45.15", "--bbox-crs", "EPSG:32633"),
        "these numbers look like degrees: give --bbox-crs EPSG:4326",
    ),
    # ---- dates and bands ------------------------------------------------------------------------------
    Case("embed date month 13", embed("--date", "2020-13-01"), "--date '2020-13-01' is not a date"),
    Case("embed date words", embed("--date", "yesterday"), "--date 'yesterday' is not a date: use YYYY-MM-DD"),
    Case("embed band named twice", embed("--band-map", "B04=1,B04=2"), "--band-map names band B04 twice"),
    Case("embed band under two names", embed("--band-map", "red=1,B04=2"), "--band-map names band B04 twice"),
    Case("embed band map without =", embed("--band-map", "B04"), "must look like B04=1"),
    Case("embed band number 0", embed("--band-map", "B04=0"), "band numbers start at 1"),
    Case("embed band number too high", embed("--band-map", "B04=9"), "has 3 bands"),
    Case("embed band map unknown band", embed("--band-map", "XX=1"), "is not a Clay band"),
    Case("embed raster without a crs", embed(source="nocrs.tif"), "has no CRS"),
    # ---- inputs ---------------------------------------------------------------------------------------
    Case("embed missing source", embed(source="missing.tif"), "missing.tif does not exist"),
    Case("embed empty folder", embed(source="empty_folder"), "no rasters (.tif/.jp2) under"),
    Case(
        "embed empty folder with bbox",
        embed("--bbox", "15,45.1,15.01,45.15", source="empty_folder"),
        "no rasters (.tif/.jp2) under",
    ),
    Case("embed garbage raster", embed(source="garbage.tif"), "cannot open"),
    Case(
        "embed rasters in two utm zones",
        embed("--date", "2020-01-01", source="good.tif+zone34_B08.tif"),
        "the rasters lie in 2 UTM zones (EPSG:32633, EPSG:32634)",
    ),
    Case(
        "embed two rasters with the same bands",
        embed(source="good.tif+good_copy.tif"),
        "band B04 is in both good and good_copy",
    ),
    # ---- outputs --------------------------------------------------------------------------------------
    Case("embed output suffix", embed(output="out/new.txt"), "new.txt should end in .gpq"),
    Case("embed output is a folder without overwrite", embed(output="folder.gpq"), "is a folder"),
    Case("embed output under a file", embed(output="a_file.txt/new.gpq"), "a_file.txt is a file, not a folder"),
    Case("embed output folder missing", embed(output="nowhere/new.gpq"), "does not exist; create it first"),
    Case("embed output folder read-only", embed(output="readonly/new.gpq"), "is not writable"),
    Case("embed output exists", embed(output="out/existing.gpq"), "already exists; choose another output"),
    Case(
        "embed parts folder name taken by a file", embed(output="out_blocked.gpq"), "is a file, not the parts folder of"
    ),
    Case("embed output folder given with a slash", embed(output="out/"), "is a folder; give a file name"),
    Case("embed output name too long", embed(output="out/" + "x" * 300 + ".gpq"), "File name too long"),
    Case(
        "embed empty source name", lambda w: ["embed", "", "-o", w / "out/new.gpq", *TINY], "an empty source was given"
    ),
    Case("embed band map empty item", embed("--band-map", "B04=1,,B03=2"), "--band-map item '' must look like"),
    # ---- models and checkpoints -----------------------------------------------------------------------
    Case(
        "embed satclip checkpoint",
        embed_with_model("--workers", "0", checkpoint="satclip.ckpt"),
        "is a SatCLIP location encoder (it embeds lon/lat, not pixels)",
    ),
    Case(
        "embed satclip checkpoint with chip size",
        embed_with_model("--chip-size", "64", checkpoint="satclip.ckpt"),
        "is a SatCLIP location encoder",
    ),
    Case("embed checkpoint missing", embed_with_model(checkpoint="missing.ckpt"), "missing.ckpt does not exist"),
    Case("embed checkpoint empty", embed_with_model(checkpoint="empty.ckpt"), "is empty (0 bytes)"),
    Case("embed checkpoint garbage", embed_with_model(checkpoint="garbage.ckpt"), "truncated or corrupt"),
    Case(
        "embed checkpoint that is another kind of file",
        embed_with_model(checkpoint="points.csv"),
        "points.csv is truncated or corrupt, or not a checkpoint",
    ),
    Case("embed checkpoint pickle protocol 5", embed_with_model(checkpoint="protocol5.ckpt"), "truncated or corrupt"),
    Case("embed checkpoint is a folder", embed_with_model(checkpoint="empty_folder"), "is a folder"),
    Case("embed unknown preset", embed_with_model("--model", "nope"), "nope"),
    Case("embed no model", embed_with_model(), "give exactly one of --checkpoint CKPT or --model NAME"),
    Case(
        "embed checkpoint and model",
        embed_with_model("--model", "clay-v0-tiny", "--checkpoint", str(DEMO)),
        "not allowed with argument --model",
    ),
    Case("embed unknown level", embed("--level", "cls"), "level 'cls' is not available"),
    Case("embed unknown satclip preset", embed("--satclip", "satclip-l99"), "'satclip-l99' is neither a checkpoint"),
    Case("embed fp16 on the cpu", embed("--precision", "fp16"), "fp16 is only supported on CUDA"),
    Case("embed unknown device", embed("--device", "tpu"), "device 'tpu': use one of"),
    Case("embed image model as satclip column", embed("--satclip", str(DEMO)), "not a SatCLIP location encoder"),
    # ---- runs that would embed nothing ----------------------------------------------------------------
    Case("embed raster smaller than one chip", embed(source="small.tif"), "20 x 20 px at 10 m, smaller than one chip"),
    Case("embed all nodata", embed(source="nodata.tif"), "all 4 chips are nodata"),
    Case("embed every chip unreadable", embed(source="truncated.tif"), "no chip could be read (4 failed)"),
    Case(
        "embed explode patches at the mean level", embed("--explode-patches"), "--explode-patches needs --level patch"
    ),
    # ---- clay similar ---------------------------------------------------------------------------------
    Case(
        "similar negative point as in the README",
        similar("--point", "-21.3,64.1"),
        "is not inside any chip of the embeddings",
    ),
    Case("similar point out of range", similar("--point", "200,10"), "is not LON,LAT in degrees"),
    Case("similar point not numbers", similar("--point", "abc"), "--point must be LON,LAT in degrees"),
    Case(
        "similar negative negative point",
        similar("--chip", CHIP, "--negative-point", "-200,1"),
        "--negative-point '-200,1' is not LON,LAT",
    ),
    Case("similar top -5", similar("--chip", CHIP, "--top", "-5"), "--top must be >= 0, got -5"),
    Case("similar threshold 2", similar("--chip", CHIP, "--threshold", "2"), "--threshold must be between -1 and 1"),
    Case("similar missing file", similar("--chip", CHIP, embeddings="out/missing.gpq"), "does not exist"),
    Case("similar file with no rows", similar("--chip", CHIP, embeddings="out/no_rows.gpq"), "no rows to search"),
    Case("similar output exists", similar("--chip", CHIP, output="out/scored.gpq"), "already exists"),
    Case("similar output is a folder", similar("--chip", CHIP, output="folder.gpq"), "is a folder"),
    Case("similar no query", similar(), "give a query: --chip ID or --point LON,LAT"),
    Case("similar unknown chip", similar("--chip", "nope"), "chip id 'nope' is not in the embeddings"),
    Case(
        "similar folder without embeddings",
        similar("--chip", CHIP, embeddings="empty_folder"),
        "holds no embeddings files",
    ),
    Case("similar glob matching nothing", similar("--chip", CHIP, embeddings="out/none_*.gpq"), "none_*.gpq"),
    Case(
        "cluster zero clusters",
        lambda w: ["cluster", w / "out/existing.gpq", "-k", "0", "-o", w / "out/c.gpq"],
        "-k/--clusters must be >= 1, got 0",
    ),
    Case(
        "cluster output exists",
        lambda w: ["cluster", w / "out/existing.gpq", "-o", w / "out/scored.gpq"],
        "already exists",
    ),
    Case(
        "classify threshold above 1",
        lambda w: ["classify", w / "out/existing.gpq", "--positive", CHIP, "--threshold", "1.5", "-o", w / "out/c.gpq"],
        "--threshold must be between 0 and 1",
    ),
    Case(
        "classify l2 zero",
        lambda w: ["classify", w / "out/existing.gpq", "--positive", CHIP, "--l2", "0", "-o", w / "out/c.gpq"],
        "--l2 must be",
    ),
    Case(
        "change missing after file",
        lambda w: ["change", w / "out/existing.gpq", w / "out/missing.gpq", "-o", w / "out/c.gpq"],
        "missing.gpq does not exist",
    ),
    Case(
        "similar output is the input, with --overwrite",
        similar("--chip", CHIP, "--top", "1", "--overwrite", output="out/existing.gpq"),
        "out/existing.gpq is also an input file: write the result to another file",
    ),
    Case(
        "similar output is a file of the searched folder",
        similar("--chip", CHIP, "--overwrite", embeddings="out", output="out/existing.gpq"),
        "is also an input file",
    ),
    Case(
        "cluster output is the input",
        lambda w: ["cluster", w / "out/existing.gpq", "--overwrite", "-o", w / "out/existing.gpq"],
        "is also an input file",
    ),
    Case(
        "change output is the after file",
        lambda w: [
            "change",
            w / "out/no_rows.gpq",
            w / "out/existing.gpq",
            "--overwrite",
            "-o",
            w / "out/existing.gpq",
        ],
        "is also an input file",
    ),
    # ---- clay embed-mgrs ------------------------------------------------------------------------------
    Case("mgrs zone 99", mgrs(tile="99ZZZ"), "'99ZZZ' is not an MGRS tile id"),
    Case("mgrs not a tile", mgrs(tile="hello"), "'hello' is not an MGRS tile id"),
    Case("mgrs start after end", mgrs(start="2021-01-01", end="2020-01-01"), "--start 2021-01-01 is after --end"),
    Case("mgrs impossible date", mgrs(start="2020-02-30"), "--start '2020-02-30' is not a date"),
    Case("mgrs output folder missing", mgrs(out="nowhere"), "does not exist; create it first"),
    Case("mgrs output folder is a file", mgrs(out="a_file.txt"), "is a file, not a folder"),
    Case("mgrs dask workers 0", mgrs("--dask-workers", "0"), "--dask-workers must be >= 1, got 0"),
    Case("mgrs empty source folder", mgrs(), "no rasters (.tif/.jp2) under"),
    # ---- clay embed-locations -------------------------------------------------------------------------
    Case(
        "locations spacing 0",
        locations("--bbox", "0,0,1,1", "--spacing", "0", "--model", "satclip-l10"),
        "--spacing must be > 0",
    ),
    Case(
        "locations bbox beyond the poles",
        locations("--bbox", "0,0,1,95", "--spacing", "1", "--model", "satclip-l10"),
        "latitudes must lie in [-90, 90]",
    ),
    Case(
        "locations points file missing",
        lambda w: ["embed-locations", w / "missing.csv", "-o", w / "out/p.gpq", "--model", "satclip-l10"],
        "missing.csv does not exist",
    ),
    Case(
        "locations image checkpoint",
        lambda w: ["embed-locations", w / "points.csv", "-o", w / "out/p.gpq", "--checkpoint", str(DEMO)],
        "not a SatCLIP location encoder",
    ),
    # ---- clay train and the command line itself -------------------------------------------------------
    Case(
        "train steps 0",
        lambda w: ["train", w / "good.tif", "-o", w / "out/m.ckpt", "--steps", "0"],
        "--steps must be >= 1, got 0",
    ),
    Case(
        "train negative learning rate",
        lambda w: ["train", w / "good.tif", "-o", w / "out/m.ckpt", "--lr", "-1"],
        "--lr must be > 0",
    ),
    Case("unknown command", lambda w: ["embedd", w / "good.tif"], "invalid choice: 'embedd'"),
    Case("unknown option", embed("--chipsize", "64"), "unrecognized arguments: --chipsize"),
]


def run_cli(argv: list[str], capfd) -> tuple[int, str, str, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    out, err = capfd.readouterr()
    return code, out, err, [w for w in caught if not issubclass(w.category, DeprecationWarning)]


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in err and "ERROR 1" not in err
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case: Case, world: World, capfd, monkeypatch):
    if case.id == "embed output folder read-only" and os.geteuid() == 0:
        # root passes os.access on any folder: make the check see the mode bits, as for any other user
        real_access = os.access
        monkeypatch.setattr(
            "clay_core.validate.os.access",
            lambda path, mode: real_access(path, mode) and not (mode & os.W_OK and not os.stat(path).st_mode & 0o222),
        )
    capfd.readouterr()
    before = tree_digest(world.root)
    code, out, err, caught = run_cli(["--progress", "none", *case.argv(world)], capfd)
    line = one_line(err)
    assert code == case.code, line
    assert line.startswith("clay") and case.message in line, line
    assert out == ""
    assert not caught, [str(w.message) for w in caught]
    assert tree_digest(world.root) == before


def test_progress_json_reports_the_error_as_an_input_event(world: World, capfd):
    code, out, err, _ = run_cli(["--progress", "json", *embed("--chip-size", "0")(world)], capfd)
    assert code == 2 and err == ""
    assert json_events(out) == [{"event": "error", "kind": "input", "message": "--chip-size must be >= 1, got 0"}]


def test_internal_error_is_exit_1_with_one_line(world: World, capfd, monkeypatch):
    import clay_core.embed

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(clay_core.embed, "embed_sources", broken)
    before = tree_digest(world.root)
    code, _, err, _ = run_cli(["--progress", "none", *embed()(world)], capfd)
    assert code == 1
    assert one_line(err) == "clay: error: ZeroDivisionError: a bug (re-run with --debug for the traceback)"
    assert tree_digest(world.root) == before


# ---- partial failure: the good chips are written, the failures listed, exit 2 ------------------------------


def test_partial_failure_writes_the_good_chips_and_lists_the_others(tmp_path, capfd):
    raster = write_geotiff(tmp_path / "half.tif", width=128, height=256)
    data = raster.read_bytes()
    raster.write_bytes(data[: int(len(data) * 0.55)])  # strips of the lower half are gone
    output = tmp_path / "half.gpq"
    code, out, err, _ = run_cli(["--progress", "none", "embed", str(raster), "-o", str(output), *TINY], capfd)
    line = one_line(err)
    assert code == 2
    assert "chips failed and are not in" in line and "half.gpq.failures.json" in line, line
    written = pq.read_table(output).column("chip_id").to_pylist()
    failures = json.loads((tmp_path / "half.gpq.failures.json").read_text())
    failed = [f["chip_id"] for f in failures["failures"]]
    assert written and failed and not set(written) & set(failed)
    assert len(written) + len(failed) == failures["chips_total"] == 8
    assert not parts_dir_for(output).exists()


# ---- damaged resume folders heal themselves ---------------------------------------------------------------


def _interrupted_run(raster: Path, output: Path, monkeypatch) -> Path:
    """Parts of a run that stopped just before the merge (as a kill would leave them)."""
    from clay_core import embed_parts

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(embed_parts.PartStore, "merge", stop)
        assert (
            main(
                [
                    "--progress",
                    "none",
                    "embed",
                    str(raster),
                    "-o",
                    str(output),
                    *DEMO_RUN,
                    "--part-chips",
                    "1",
                    "--batch-size",
                    "1",
                ]
            )
            == 130
        )
    parts = parts_dir_for(output)
    assert len(list(parts.glob("part-*.parquet"))) == 4
    return parts


DAMAGE = {
    "truncated part": (lambda parts: _truncate(parts / "part-00001.parquet"), "part-00001.parquet (truncated"),
    "zero-byte part": (lambda parts: (parts / "part-00002.parquet").write_bytes(b""), "part-00002.parquet (empty)"),
    "corrupt job.json": (lambda parts: (parts / "job.json").write_text("{not json"), "job.json (unreadable"),
}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_redoes_damaged_parts_and_names_them(damage, tmp_path, monkeypatch, capfd):
    raster = write_geotiff(tmp_path / "scene.tif")
    output = tmp_path / "scene.gpq"
    parts = _interrupted_run(raster, output, monkeypatch)
    harm, named = DAMAGE[damage]
    harm(parts)
    capfd.readouterr()
    code, out, err, _ = run_cli(["--progress", "json", "embed", str(raster), "-o", str(output), *DEMO_RUN], capfd)
    events = json_events(out)
    assert code == 0, events
    warnings_ = [e["message"] for e in events_of(events, "log") if e["level"] == "warning"]
    assert len(warnings_) == 1 and named in warnings_[0], warnings_
    assert sorted(pq.read_table(output).column("chip_id").to_pylist()) == [
        f"scene_20200101_{row:03d}_{col:03d}" for row in range(2) for col in range(2)
    ]
    assert not parts.exists()


def test_an_output_being_written_by_a_live_process_is_refused(tmp_path, capfd):
    import fcntl

    raster = write_geotiff(tmp_path / "scene.tif")
    output = tmp_path / "o.gpq"
    parts = parts_dir_for(output)
    parts.mkdir()
    with open(parts / "lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242, since 2026-01-01 00:00:00")
        held.flush()
        before = tree_digest(tmp_path)
        code, _, err, _ = run_cli(["--progress", "none", "embed", str(raster), "-o", str(output), *TINY], capfd)
        assert tree_digest(tmp_path) == before
    assert code == 2
    assert "another process (pid 4242, since 2026-01-01 00:00:00) is writing" in one_line(err)


# ---- a full disk ---------------------------------------------------------------------------------------------


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(args[1]) if len(args) > 1 else None)


def test_disk_full_while_writing_parts_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capfd):
    from clay_core import embed_parts

    raster = write_geotiff(tmp_path / "scene.tif")
    before = tree_digest(tmp_path)
    monkeypatch.setattr(embed_parts.pq, "write_table", _disk_full)
    code, _, err, _ = run_cli(["--progress", "none", "embed", str(raster), "-o", str(tmp_path / "o.gpq"), *TINY], capfd)
    assert code == 2
    assert one_line(err).startswith("clay: error: the disk is full")
    assert tree_digest(tmp_path) == before


def test_disk_full_at_the_merge_keeps_the_parts_to_resume(tmp_path, monkeypatch, capfd):
    from clay_core import embed_parts

    raster = write_geotiff(tmp_path / "scene.tif")
    output = tmp_path / "o.gpq"

    class FullDisk:
        def __init__(self, *args, **kwargs):
            _disk_full(None, args[0])

    with monkeypatch.context() as patch:
        patch.setattr(embed_parts.pq, "ParquetWriter", FullDisk)
        code, _, err, _ = run_cli(["--progress", "none", "embed", str(raster), "-o", str(output), *DEMO_RUN], capfd)
    assert code == 2
    line = one_line(err)
    assert "the disk is full" in line and "it resumes from the chips kept in" in line, line
    assert not output.exists() and not list(tmp_path.glob(".o.gpq.*.tmp"))
    assert main(["--progress", "none", "embed", str(raster), "-o", str(output), *DEMO_RUN]) == 0
    assert pq.read_table(output).num_rows == 4


# ---- across processes: the lock after kill -9, two runs racing for one output ------------------------------


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill -9", "SIGTERM"])
def test_rerun_right_after_a_kill_takes_the_lock_and_resumes(how, tmp_path):
    raster = write_geotiff(tmp_path / "big.tif", width=512, height=512)
    output = tmp_path / "big.gpq"
    argv = [
        "embed",
        str(raster),
        "-o",
        str(output),
        *DEMO_RUN[:-2],
        "--workers",
        "2",
        "--batch-size",
        "1",
        "--part-chips",
        "1",
    ]
    first = start_clay("--progress", "json", *argv)
    deadline = time.monotonic() + 60
    for line in first.stdout:  # wait until it has settled some chips (parts on disk), then kill it
        if '"progress"' in line and json.loads(line).get("done", 0) >= 4:
            break
        assert time.monotonic() < deadline
    first.send_signal(how)
    first.communicate(timeout=30)
    assert parts_dir_for(output).is_dir()
    second = start_clay("--progress", "json", *argv)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    result = result_of(json_events(out))["summary"]
    assert result["chips_resumed"] >= 1 and result["chips_written"] == 64
    ids = pq.read_table(output).column("chip_id").to_pylist()
    assert len(ids) == len(set(ids)) == 64


def test_two_similar_runs_racing_for_one_new_output_one_wins(world: World, tmp_path):
    output = tmp_path / "race.gpq"
    argv = ["similar", world / "out/existing.gpq", "--chip", CHIP, "-o", str(output)]
    runs = [start_clay("--progress", "none", *argv) for _ in range(4)]
    results = [(run.wait(timeout=120), run.communicate()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2, 2, 2], results
    for code, (_, err) in results:
        if code == 2:
            assert "already exists" in err and "Traceback" not in err
    assert pq.read_table(output).num_rows == 4
    assert [p.name for p in tmp_path.iterdir()] == ["race.gpq"]  # no temporary left behind
