"""Safe checkpoint loading: nothing pickled is ever executed, broken files give one clear line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from clay_core import checkpoints
from clay_core.checkpoints import file_sha256, read_checkpoint
from clay_core.errors import CheckpointError
from clay_core.models import load_model
from tests.helpers.parity import parity_fixture, parity_reference

MICRO_SHA256 = "231ea66f0e65c9bc27302879d70b9e9d9b1404226150be385fa7f6959888c6ec"


@pytest.fixture(scope="module")
def micro_checkpoint(shared_fixtures: Path) -> Path:
    return parity_fixture("clay_v0_micro") / "checkpoint.ckpt"


class _CreatesMarker:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_reads_lightning_checkpoint_and_its_hash(micro_checkpoint: Path) -> None:
    contents = read_checkpoint(micro_checkpoint)
    assert contents.format == "lightning"
    assert contents.sha256 == MICRO_SHA256 == file_sha256(micro_checkpoint)
    assert len(contents.state_dict) == 91
    assert contents.hyper_parameters["image_size"] == 128


@pytest.mark.parametrize("read_once", [True, False], ids=["in-memory", "from-disk"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickled_object_is_refused_and_not_executed(
    tmp_path: Path, writer: str, read_once: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not read_once:  # the path large checkpoints take: parsed from disk, hashed in a second pass
        monkeypatch.setattr(checkpoints, "READ_ONCE_LIMIT", 0)
    marker = tmp_path / "pwned"
    payload = {"state_dict": {"model.encoder.x": torch.zeros(1)}, "hyper_parameters": _CreatesMarker(marker)}
    path = tmp_path / "evil.ckpt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="pickled Python object") as caught:
        load_model(path, device="cpu")
    assert "\n" not in str(caught.value) and "open" in str(caught.value)  # names the refused global
    assert not marker.exists()


def test_checkpoint_is_read_and_hashed_once(micro_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A usual-size checkpoint: one read feeds both the hash and torch.load (no second pass over the file)."""
    loaded_from = []
    real_load = torch.load

    def spy_load(source, *args, **kwargs):  # type: ignore[no-untyped-def]
        loaded_from.append(type(source).__name__)
        return real_load(source, *args, **kwargs)

    def no_second_pass(*args):  # type: ignore[no-untyped-def]
        raise AssertionError("the file was hashed in a second pass")

    monkeypatch.setattr(torch, "load", spy_load)
    monkeypatch.setattr(checkpoints, "_cached_sha256", no_second_pass)
    contents = read_checkpoint(micro_checkpoint)
    assert contents.sha256 == MICRO_SHA256 and loaded_from == ["BytesIO"]


def test_large_checkpoint_hash_is_cached(
    tmp_path: Path, micro_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above READ_ONCE_LIMIT the file is parsed from disk; its hash is computed once per (path, size, mtime)."""
    monkeypatch.setattr(checkpoints, "READ_ONCE_LIMIT", 0)
    path = tmp_path / "big.ckpt"
    path.write_bytes(micro_checkpoint.read_bytes())
    before = checkpoints._cached_sha256.cache_info()
    first, second = read_checkpoint(path), read_checkpoint(path)
    after = checkpoints._cached_sha256.cache_info()
    assert first.sha256 == second.sha256 == MICRO_SHA256
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    assert len(first.state_dict) == 91
    torch.save({"w": torch.ones(1)}, path)  # replaced (new inode/mtime/size): hashed again
    assert read_checkpoint(path).sha256 == file_sha256(path) != MICRO_SHA256


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickled_globals_are_found_by_streaming(tmp_path: Path, writer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The opcode scan (the error path) streams from a handle: it never reads the whole file into memory."""
    import io

    marker = tmp_path / "pwned"
    payload = {"x": torch.zeros(1), "evil": _CreatesMarker(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)
    data = path.read_bytes()

    def whole_file(*args):  # type: ignore[no-untyped-def]
        raise AssertionError("read the whole file")

    monkeypatch.setattr(Path, "read_bytes", whole_file)
    for source in (path, io.BytesIO(data)):
        names = checkpoints._pickled_globals(source)
        assert names is not None and any(name.endswith(".open") for name in names), names
    assert not marker.exists()
    assert checkpoints._pickled_globals(io.BytesIO(b"\x00not a pickle")) is None


def test_truncated_checkpoint(tmp_path: Path, micro_checkpoint: Path) -> None:
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(micro_checkpoint.read_bytes()[:300_000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path, device="cpu")


def test_corrupt_and_empty_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="corrupt") as caught:
        read_checkpoint(garbage)
    assert "pickled" not in str(caught.value)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    bad_safetensors = tmp_path / "bad.safetensors"
    bad_safetensors.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="safetensors"):
        read_checkpoint(bad_safetensors)


def test_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a file"):
        load_model(tmp_path, device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt")


def test_wrong_architecture_lists_missing_unexpected_and_misshaped_keys(tmp_path: Path, micro_checkpoint: Path) -> None:
    checkpoint = torch.load(micro_checkpoint, weights_only=True)
    state = checkpoint["state_dict"]
    del state["model.encoder.transformer.layers.1.1.net.4.bias"]
    state["model.encoder.transformer.layers.1.0.extra"] = torch.zeros(2)
    state["model.encoder.transformer.norm.weight"] = torch.zeros(65)
    path = tmp_path / "wrong.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as caught:
        load_model(path, device="cpu")
    message = str(caught.value)
    assert "missing 1: encoder.transformer.layers.1.1.net.4.bias" in message
    assert "unexpected 1: encoder.transformer.layers.1.0.extra" in message
    assert "mis-shaped 1: encoder.transformer.norm.weight (65,) vs model (64,)" in message
    assert "\n" not in message


def test_teacher_and_decoder_keys_are_ignored(tmp_path: Path, micro_checkpoint: Path) -> None:
    checkpoint = torch.load(micro_checkpoint, weights_only=True)
    checkpoint["state_dict"]["model.teacher.cls_token"] = torch.zeros(1, 1, 8)
    path = tmp_path / "with_teacher.ckpt"
    torch.save(checkpoint, path)
    model = load_model(path, device="cpu")
    assert model.config.dim == 64 and not any(k.startswith("decoder") for k in model.state_dict())


def _reference_mean() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    import numpy as np

    data = parity_reference("clay_v0_micro")
    batch = {
        "pixels": torch.from_numpy(data["pixels"].astype(np.float32)),
        "latlon": torch.from_numpy(data["latlon"]),
        "timestep": torch.from_numpy(data["timestep"]),
    }
    return batch, torch.from_numpy(data["embeddings_mean"])


def test_plain_state_dict_without_hyper_parameters(tmp_path: Path, micro_checkpoint: Path) -> None:
    state = torch.load(micro_checkpoint, weights_only=True)["state_dict"]
    encoder_only = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.encoder.")}
    path = tmp_path / "encoder.pt"
    torch.save(encoder_only, path)
    # shapes only: chips default to 512 px; heads x dim_head = 64 with an output projection means
    # more than one head (the reference drops to_out for one dim-wide head), so 2 x 32
    inferred = load_model(path, device="cpu")
    assert (inferred.config.dim, inferred.config.depth, inferred.config.patch_size) == (64, 2, 16)
    assert (inferred.config.heads, inferred.config.dim_head) == (2, 32)
    assert inferred.config.mlp_ratio == 2.0 and inferred.config.image_size == 512
    model = load_model(path, device="cpu", image_size=128, heads=2, dim_head=32)
    batch, expected = _reference_mean()
    assert float((model.embed(batch) - expected).abs().max()) < 1e-4


def test_safetensors_with_hyper_parameters(tmp_path: Path, micro_checkpoint: Path) -> None:
    checkpoint = torch.load(micro_checkpoint, weights_only=True)
    tensors = {k: v.contiguous() for k, v in checkpoint["state_dict"].items()}
    hyper = {"image_size": 128, "patch_size": 16, "fixture_model_args": {"heads": 2, "dim_head": 32}}
    path = tmp_path / "micro.safetensors"
    save_file(tensors, str(path), metadata={"hyper_parameters": json.dumps(hyper)})
    contents = read_checkpoint(path)
    assert contents.format == "safetensors" and contents.hyper_parameters == hyper
    model = load_model(path, device="cpu")
    batch, expected = _reference_mean()
    assert float((model.embed(batch) - expected).abs().max()) < 1e-4
    assert model.checkpoint_sha256 == file_sha256(path)


def _pickle_under_foreign_names(monkeypatch: pytest.MonkeyPatch, classes: dict[str, type]) -> None:
    """Make classes pickle under another project's module path (as Lightning's would), without that
    project being importable when the file is read back."""
    import sys
    import types

    for qualified, cls in classes.items():
        module_name, _, name = qualified.rpartition(".")
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            monkeypatch.setitem(
                sys.modules,
                ".".join(parts[:depth]),
                sys.modules.get(".".join(parts[:depth])) or types.ModuleType(".".join(parts[:depth])),
            )
        cls.__module__, cls.__qualname__, cls.__name__ = module_name, name, name
        setattr(sys.modules[module_name], name, cls)


def test_lightning_data_globals_load_as_plain_data(
    tmp_path: Path, micro_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real Lightning files keep hyper-parameters as an AttributeDict and numpy scalars in callback state:
    those load as plain data (Lightning is not installed, nothing of it runs); other objects stay refused."""
    import sys

    import numpy as np

    class AttributeDict(dict):
        pass

    class ModelCheckpoint:
        pass

    original = torch.load(micro_checkpoint, weights_only=True)
    with monkeypatch.context() as patch:
        _pickle_under_foreign_names(patch, {"lightning.fabric.utilities.data.AttributeDict": AttributeDict})
        lightning_like = dict(
            original,
            hyper_parameters=AttributeDict(original["hyper_parameters"]),
            callbacks={"ModelCheckpoint": {"best_model_score": np.float64(0.46), "dtype": np.dtype("float32")}},
        )
        path = tmp_path / "lightning.ckpt"
        torch.save(lightning_like, path)
    assert not any(name.startswith("lightning") for name in sys.modules)
    checkpoint = read_checkpoint(path)
    assert type(checkpoint.hyper_parameters) is dict
    assert checkpoint.hyper_parameters["image_size"] == original["hyper_parameters"]["image_size"]
    model = load_model(path, device="cpu")
    assert model.config.image_size == original["hyper_parameters"]["image_size"]

    with monkeypatch.context() as patch:
        _pickle_under_foreign_names(patch, {"lightning.pytorch.callbacks.ModelCheckpoint": ModelCheckpoint})
        torch.save(dict(original, callbacks={"ModelCheckpoint": ModelCheckpoint()}), tmp_path / "object.ckpt")
    with pytest.raises(CheckpointError, match="lightning.pytorch.callbacks.ModelCheckpoint"):
        read_checkpoint(tmp_path / "object.ckpt")
