"""Bad input to the clay: algorithms (processing.run in headless QGIS, and the real qgis_process): one
QgsProcessingException with the same one-line message the CLI gives (the algorithms call the same validators
in clay_core.validate before the worker starts, and the worker's own input errors come back as its line),
and every file that was there before byte-identical afterwards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.bad_inputs import tree_digest, write_geotiff
from tests.helpers.qgis import run_qgis_process, write_embeddings_file

TINY_INDEX = 1  # clay-v0-tiny in clay_qgis.algorithms.base.MODEL_PRESETS (checked by test_embed_algorithms)
EXTENT = "500000,501280,4998720,5000000 [EPSG:32633]"


@pytest.fixture(scope="module")
def world(tmp_path_factory, satclip_checkpoint) -> Path:
    root = tmp_path_factory.mktemp("qgis-bad-inputs")
    write_geotiff(root / "good.tif")
    write_geotiff(root / "small.tif", width=20, height=20)
    (root / "a_file.txt").write_text("a file, not a folder\n")
    (root / "satclip.ckpt").write_bytes(Path(satclip_checkpoint).read_bytes())
    out = root / "out"
    out.mkdir()
    write_embeddings_file(out / "existing.gpq")
    table = pq.read_table(out / "existing.gpq")
    pq.write_table(table.slice(0, 0), out / "no_rows.gpq")
    (out / "garbage.gpq").write_bytes(b"not parquet\n" * 10)
    return root


@dataclass(frozen=True)
class Case:
    id: str
    algorithm: str
    parameters: Callable[[Path], dict]
    message: str


def embed(**extra) -> Callable[[Path], dict]:
    def parameters(root: Path) -> dict:
        values = {
            "INPUT": [str(root / "good.tif")],
            "MODEL": TINY_INDEX,
            "CHIP_SIZE": 64,
            "DEVICE": 1,
            "WORKERS": 0,
            "OUTPUT": str(root / "out" / "new.gpq"),
        }
        values.update({k: (v(root) if callable(v) else v) for k, v in extra.items()})
        return values

    return parameters


def mgrs(**extra) -> Callable[[Path], dict]:
    def parameters(root: Path) -> dict:
        values = {
            "TILE": "33TWL",
            "SOURCE": str(root / "out"),
            "START": "2020-01-01",
            "END": "2020-12-31",
            "MODEL": TINY_INDEX,
            "DEVICE": 1,
            "WORKERS": 0,
            "OUTPUT_FOLDER": str(root / "out"),
        }
        values.update(extra)
        return values

    return parameters


def similarity(file: str = "existing.gpq", **extra) -> Callable[[Path], dict]:
    return lambda root: {"INPUT": str(root / "out" / file), "OUTPUT": "TEMPORARY_OUTPUT", **extra}


CASES = [
    Case("embed date month 13", "clay:embed", embed(DATE="2020-13-01"), "'2020-13-01' is not a date"),
    Case("embed band named twice", "clay:embed", embed(BAND_MAP="B04=1,B04=2"), "names band B04 twice"),
    Case("embed band map without =", "clay:embed", embed(BAND_MAP="B04"), "must look like B04=1"),
    Case("embed band number 0", "clay:embed", embed(BAND_MAP="B04=0"), "band numbers start at 1"),
    Case(
        "embed extent off the raster",
        "clay:embed",
        embed(EXTENT="0,1000,0,1000 [EPSG:32633]"),
        "does not overlap any of the raster layers",
    ),
    Case(
        "embed output under a file",
        "clay:embed",
        embed(OUTPUT=lambda root: str(root / "a_file.txt" / "new.gpq")),
        "cannot create the output folder",
    ),
    Case(
        "embed checkpoint missing",
        "clay:embed",
        embed(CHECKPOINT=lambda root: str(root / "missing.ckpt")),
        "does not exist",
    ),
    Case(
        "embed satclip checkpoint (worker)",
        "clay:embed",
        embed(CHECKPOINT=lambda root: str(root / "satclip.ckpt"), EXTENT=EXTENT),
        "is a SatCLIP location encoder",
    ),
    Case(
        "embed raster smaller than one chip (worker)",
        "clay:embed",
        embed(INPUT=lambda root: [str(root / "small.tif")]),
        "smaller than one chip",
    ),
    Case("mgrs not a tile", "clay:embedmgrs", mgrs(TILE="hello"), "'hello' is not an MGRS tile id"),
    Case("mgrs zone 61", "clay:embedmgrs", mgrs(TILE="61UUU"), "UTM zone 61 is not in 1..60"),
    Case(
        "mgrs start after end",
        "clay:embedmgrs",
        mgrs(START="2021-01-01", END="2020-01-01"),
        "the start date 2021-01-01 is after the end date 2020-01-01",
    ),
    Case("mgrs impossible date", "clay:embedmgrs", mgrs(START="2020-02-30"), "'2020-02-30' is not a date"),
    Case(
        "similarity file with no rows",
        "clay:similarity",
        similarity("no_rows.gpq", POINT="15.0,45.1 [EPSG:4326]"),
        "has no rows (nothing was embedded)",
    ),
    Case("similarity unknown chip", "clay:similarity", similarity(CHIP_IDS="nope"), "chip id 'nope' is not in"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_processing_error_and_changes_nothing(case: Case, world: Path, clay_provider):
    import processing
    from qgis.core import QgsProcessingException

    before = tree_digest(world)
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(case.algorithm, case.parameters(world))
    message = str(raised.value)
    assert case.message in message and "\n" not in message.strip() and "Traceback" not in message, message
    assert tree_digest(world) == before


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["BAND_MAP=B04=1,B04=2"], "names band B04 twice"),  # refused in QGIS's own Python
        (["CHECKPOINT={root}/satclip.ckpt"], "is a SatCLIP location encoder"),  # refused by the worker
    ],
    ids=["validator", "worker"],
)
def test_qgis_process_prints_the_error_once(arguments, message, world: Path, qgis_process_env):
    before = ours(tree_digest(world))
    done = run_qgis_process(
        qgis_process_env,
        "run",
        "clay:embed",
        "--",
        f"INPUT={world / 'good.tif'}",
        f"OUTPUT={world / 'out' / 'new.gpq'}",
        f"MODEL={TINY_INDEX}",
        "CHIP_SIZE=64",
        "DEVICE=1",
        "WORKERS=0",
        f"EXTENT={EXTENT}",
        *(a.format(root=world) for a in arguments),
    )
    assert done.returncode != 0
    mentions = [line for line in (done.stdout + done.stderr).splitlines() if message in line]
    assert len(mentions) == 1 and mentions[0].startswith("ERROR:"), done.stderr
    assert "Traceback" not in done.stderr
    assert ours(tree_digest(world)) == before


def ours(digest: dict[str, str]) -> dict[str, str]:
    """Without the .aux.xml statistics QGIS itself writes beside a raster it opened."""
    return {name: value for name, value in digest.items() if not name.endswith(".aux.xml")}
