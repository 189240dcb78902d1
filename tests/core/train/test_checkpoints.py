"""Checkpoint writes are atomic: a failed save keeps the previous file and leaves no temporary."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def test_checkpoint_writes_use_unique_temporaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed save leaves the previous checkpoint intact and no temporary behind."""
    from clay_core.train import atomic_save

    target = tmp_path / "model.ckpt"
    atomic_save({"step": torch.tensor(1)}, target)

    def failing_save(obj, path):  # type: ignore[no-untyped-def]
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"step": torch.tensor(2)}, target)
    monkeypatch.undo()
    assert int(torch.load(target, weights_only=True)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]
