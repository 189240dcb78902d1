"""The committed parity fixtures (tests/data/parity): one lookup that fails loudly when one is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PARITY = Path(__file__).resolve().parent.parent / "data" / "parity"


def parity_fixture(name: str) -> Path:
    """The folder of one committed parity fixture (tests/data/parity/NAME: official-layout checkpoint,
    reference.npz from the original code, README). A missing fixture is a failure, never a skip: the
    parity tests are the proof of model compatibility and must run on every clone."""
    path = PARITY / name
    if not (path / "checkpoint.ckpt").is_file() or not (path / "reference.npz").is_file():
        raise FileNotFoundError(
            f"parity fixture {name!r} is missing at {path}; it is committed under tests/data/parity"
        )
    return path


def parity_reference(name: str) -> dict[str, np.ndarray]:
    """The reference inputs and outputs of one fixture (its reference.npz), read into memory."""
    with np.load(parity_fixture(name) / "reference.npz") as data:
        return {key: data[key] for key in data.files}
