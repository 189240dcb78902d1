"""clay_core.validate: the one place user-typed values are checked (the CLI and the QGIS algorithms call it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clay_core import validate
from clay_core.cli import build_parser, join_negative_values
from clay_core.errors import ClayInputError

REPO = Path(__file__).resolve().parents[2]


def test_importing_it_loads_no_third_party_module():
    """QGIS's own Python imports it (the in-process plugin side must not need numpy, rasterio, pyproj, torch)."""
    code = (
        "import sys, clay_core.validate as v; v.tile_id('33UUU'); v.band_map('red=1'); "
        "print(sorted(m for m in ('numpy', 'rasterio', 'pyproj', 'torch', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(REPO)}
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("-10,-5,-9,-4", (-10.0, -5.0, -9.0, -4.0)),
        (" 12.5, 52.45 ,12.7,52.52", (12.5, 52.45, 12.7, 52.52)),
        ((0, 0, 1, 1), (0.0, 0.0, 1.0, 1.0)),
    ],
)
def test_bbox_accepts(text, expected):
    assert validate.bbox(text) == expected


def test_bbox_in_projected_coordinates_is_not_held_to_degrees():
    assert validate.bbox("500000,5000000,501000,5001000", crs="EPSG:32633")[3] == 5001000.0
    with pytest.raises(ClayInputError, match="latitudes"):
        validate.bbox("500000,5000000,501000,5001000")


def test_band_map_canonical_names_and_numbers():
    assert validate.band_map("b4=1, nir=B08, B8A=3") == {"B04": 1, "B08": "B08", "B8A": 3}
    with pytest.raises(ClayInputError, match="names band B08 twice"):
        validate.band_map("nir=1,B8=2")


def test_negative_values_are_joined_to_the_option_that_takes_them():
    parser = build_parser()
    argv = ["similar", "a.gpq", "--point", "-21.3,64.1", "--top", "5", "-o", "x.gpq", "--overwrite"]
    assert join_negative_values(argv, parser) == [
        "similar",
        "a.gpq",
        "--point=-21.3,64.1",
        "--top",
        "5",
        "-o",
        "x.gpq",
        "--overwrite",
    ]
    # after "--" nothing is touched; a flag that takes no value leaves a following token alone
    assert join_negative_values(["embed", "--overwrite", "--", "-1.tif"], parser) == [
        "embed",
        "--overwrite",
        "--",
        "-1.tif",
    ]


def test_output_file_order_of_checks(tmp_path):
    (tmp_path / "folder.gpq").mkdir()
    with pytest.raises(ClayInputError, match="is a folder"):
        validate.output_file(tmp_path / "folder.gpq", overwrite=True)
    (tmp_path / "old.gpq").write_bytes(b"x")
    with pytest.raises(ClayInputError, match="already exists"):
        validate.output_file(tmp_path / "old.gpq", overwrite=False)
    assert validate.output_file(tmp_path / "old.gpq", overwrite=True) == tmp_path / "old.gpq"


@pytest.mark.parametrize("text", ["B 04=1", "B-4=1", "B04=1=2", "B04=1,", "=1"])
def test_band_map_refuses_what_is_not_band_equals_where(text: str) -> None:
    """One parser for the CLI and the plugin (which used its own regex): a band name is letters and digits,
    and each item has exactly one '='."""
    with pytest.raises(ClayInputError, match="must look like B04=1"):
        validate.band_map(text, "band mapping")


def test_point_is_lon_lat_in_degrees_with_the_option_named():
    assert validate.point("12.5,52.4") == (12.5, 52.4)
    assert validate.point(" -21.3, 64.1 ", "--positive-point") == (-21.3, 64.1)
    with pytest.raises(ClayInputError, match="--point must be LON,LAT"):
        validate.point("12.5")
    with pytest.raises(ClayInputError, match="--negative-point '52.4,200' is not LON,LAT.*lon in"):
        validate.point("52.4,200", "--negative-point")
    with pytest.raises(ClayInputError, match="not LON,LAT"):
        validate.point("nan,1")
