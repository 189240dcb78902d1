"""Fixtures for the model tests: the Clay v0 micro parity checkpoint and its reference outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.parity import parity_fixture, parity_reference


@pytest.fixture(scope="session")
def v0_micro_dir() -> Path:
    return parity_fixture("clay_v0_micro")


@pytest.fixture(scope="session")
def v0_micro_checkpoint(v0_micro_dir: Path) -> Path:
    return v0_micro_dir / "checkpoint.ckpt"


@pytest.fixture(scope="session")
def v0_micro_reference() -> dict[str, np.ndarray]:
    return parity_reference("clay_v0_micro")
