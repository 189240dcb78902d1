"""Safe checkpoint reading: a checkpoint is untrusted input, so it is never unpickled as code.

Lightning `.ckpt` and plain state_dict `.pt` files go through `torch.load(weights_only=True)` only
(tensors, plain containers and numbers; any other pickled global is refused before it is built);
`.safetensors` go through `safetensors`. Errors are one-line `CheckpointError`s naming the file,
the problem and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import io
import json
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import torch
from torch import nn

from clay_core.errors import CheckpointError

SAFETENSORS_SUFFIXES = {".safetensors"}
_HASH_CHUNK = 1 << 20
# Checkpoints up to this size are read into memory once, hashed and parsed from there (one disk read,
# at most ~2x the file in RAM for a moment); larger ones are parsed from disk and hashed in a second,
# streaming pass whose result is cached, so a reload in the same process does not hash again.
READ_ONCE_LIMIT = 512 << 20
_MAX_LISTED = 6  # keys named per category in a mismatch message; the rest are counted


@dataclass
class CheckpointContents:
    path: str
    format: str  # "lightning" | "state_dict" | "safetensors"
    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


def file_sha256(path: str | Path) -> str:
    """sha256 of a file; cached per (path, size, mtime, inode), so an unchanged file is hashed once."""
    path = Path(path).resolve()
    stat = path.stat()
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 of a model's weights themselves (names and raw bytes, in name order; any dtype, bf16 too)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=32)
def _cached_sha256(path: str, _size: int, _mtime_ns: int, _inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _require_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .ckpt/.pt/.safetensors file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file; pass the path of a .ckpt/.pt/.safetensors file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); download it again")


def _is_safetensors(path: Path, data: bytes | None = None) -> bool:
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return True
    # safetensors: 8-byte little-endian header length, then a JSON object.
    if data is not None:
        head = data[:9]
    else:
        with open(path, "rb") as handle:
            head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < (1 << 32)


@contextlib.contextmanager
def _pickle_stream(file: Path | BinaryIO) -> Iterator[IO[bytes]]:
    """A handle on the pickle torch would unpickle: `*/data.pkl` inside a zip checkpoint, else the file
    itself; streamed, so a large broken file is never read into memory whole."""
    with contextlib.ExitStack() as stack:
        handle: BinaryIO = stack.enter_context(open(file, "rb")) if isinstance(file, Path) else file
        handle.seek(0)
        if zipfile.is_zipfile(handle):
            archive = stack.enter_context(zipfile.ZipFile(handle))
            names = [name for name in archive.namelist() if name.endswith("data.pkl")]
            yield stack.enter_context(archive.open(names[0])) if names else io.BytesIO(b"")
        else:
            handle.seek(0)
            yield handle


def _pickled_globals(file: Path | BinaryIO, max_opcodes: int = 1_000_000) -> list[str] | None:
    """Names of the Python objects the (first) pickle in `file` would import, found by *parsing* its
    opcodes with pickletools (nothing is executed); None when it is not a valid pickle at all."""
    import pickletools

    found: list[str] = []
    recent_strings: list[str] = []
    try:
        with _pickle_stream(file) as stream:
            for count, (opcode, argument, _position) in enumerate(pickletools.genops(stream)):
                if count > max_opcodes:
                    break
                if opcode.name in ("GLOBAL", "INST"):
                    found.append(str(argument).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL":
                    found.append(".".join(recent_strings[-2:]))
                elif isinstance(argument, str):
                    recent_strings.append(argument)
    except (ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile, OSError):
        return found or None
    return found


def _harmless_globals() -> list[Any]:
    """Globals that real training checkpoints hold beside their tensors and that only carry data: Lightning's
    AttributeDict (a plain dict subclass hyper-parameters are often saved as; read as a plain dict, so no
    Lightning code is imported or run) and numpy scalars/dtypes in callback state, which torch's own
    documentation lists as safe to allow. Everything else stays refused."""
    import numpy

    allowed: list[Any] = [
        (dict, name)
        for name in (
            "lightning.fabric.utilities.data.AttributeDict",
            "lightning_fabric.utilities.data.AttributeDict",
            "pytorch_lightning.utilities.parsing.AttributeDict",
        )
    ]
    # numpy 2 renamed numpy.core to numpy._core; by name, as only one of them exists in each version's stubs.
    core = "numpy._core" if int(numpy.__version__.split(".")[0]) >= 2 else "numpy.core"
    multiarray = importlib.import_module(f"{core}.multiarray")
    allowed += [multiarray.scalar, numpy.dtype]
    allowed += [type(numpy.dtype(kind)) for kind in ("float64", "float32", "int64", "int32", "bool")]
    return allowed


def safe_torch_load(path: Path, data: bytes | None = None) -> Any:
    """torch.load restricted to tensors and plain data (weights_only), of `path` or of its bytes `data`
    when the caller has already read them; every failure becomes a one-line CheckpointError."""
    try:
        with torch.serialization.safe_globals(_harmless_globals()), warnings.catch_warnings():
            # A file pickled with another protocol makes torch warn before it fails (or loads): the outcome
            # is what the user needs to hear, in our one line, not torch's advice to file an issue.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(io.BytesIO(data) if data is not None else path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only wraps every unpickling failure alike: tell a refused object from a broken file.
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        names = [named.group(1)] if named else _pickled_globals(io.BytesIO(data) if data is not None else path)
        if names:
            # Name what is foreign first: tensor-rebuild helpers are expected in any torch pickle.
            foreign = [name for name in names if not name.startswith(("torch.", "collections.OrderedDict"))]
            shown = ", ".join(list(dict.fromkeys(foreign or names))[:3])
            raise CheckpointError(
                f"checkpoint {path} contains a pickled Python object ({shown}), not only tensors; refused "
                "without running it (a checkpoint is untrusted): re-save its state_dict as .pt or .safetensors"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt, or not a checkpoint (not a readable torch file): check "
            "that it is the .ckpt/.pt/.safetensors file, else download it again"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt, or not a checkpoint ({type(exc).__name__}: "
            f"{_first_line(str(exc))}): check that it is the .ckpt/.pt/.safetensors file, else download it again"
        ) from None


def _first_line(text: str, limit: int = 120) -> str:
    line = (text.strip().splitlines() or [""])[0].split(". ")[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header (8-byte little-endian length, then JSON)."""
    length = int.from_bytes(data[:8], "little")
    if len(data) < 8 + length:
        raise ValueError(f"header of {length} bytes runs past the end of the file")
    header = json.loads(data[8 : 8 + length])
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _read_safetensors(path: Path, data: bytes | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and hyper-parameters of a safetensors file, from its bytes `data` when already read."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load as load_safetensors_bytes

    try:
        if data is not None:
            metadata = _safetensors_metadata(data)
            tensors = load_safetensors_bytes(data)
        else:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
                metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({_first_line(str(exc))}); download it again"
        ) from None
    hyper_parameters: dict[str, Any] = {}
    raw = metadata.get("hyper_parameters")
    if raw:
        try:
            parsed = json.loads(raw)
            hyper_parameters = parsed if isinstance(parsed, dict) else {}
        except json.JSONDecodeError:
            hyper_parameters = {}
    return tensors, hyper_parameters


def _tensor_dict(candidate: Any) -> dict[str, torch.Tensor] | None:
    if (
        isinstance(candidate, Mapping)
        and candidate
        and all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in candidate.items())
    ):
        return dict(candidate)
    return None


def _split_loaded(path: Path, loaded: Any) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """Find the state_dict and hyper-parameters in whatever torch.load returned."""
    if not isinstance(loaded, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(loaded).__name__}, not a state_dict or Lightning checkpoint"
        )
    hyper = loaded.get("hyper_parameters")
    hyper_parameters = dict(hyper) if isinstance(hyper, Mapping) else {}
    if "state_dict" in loaded:
        raw_state = loaded["state_dict"]
        if not isinstance(raw_state, Mapping):
            raise CheckpointError(f"checkpoint {path}: 'state_dict' is a {type(raw_state).__name__}, not a mapping")
        # Lightning may keep non-tensor extras beside the weights; the model only takes tensors.
        state = {key: value for key, value in raw_state.items() if isinstance(value, torch.Tensor)}
        if not state:
            raise CheckpointError(f"checkpoint {path}: 'state_dict' holds no tensors")
        return "lightning", state, hyper_parameters
    for key in ("model_state_dict", "model"):
        nested = _tensor_dict(loaded.get(key))
        if nested is not None:
            return "state_dict", nested, hyper_parameters
    plain = _tensor_dict({k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)})
    if plain is None:
        raise CheckpointError(f"checkpoint {path} holds no tensors (keys: {', '.join(map(str, list(loaded)[:8]))})")
    return "state_dict", plain, hyper_parameters


def read_checkpoint(path: str | Path) -> CheckpointContents:
    """Read tensors + hyper-parameters from a Lightning .ckpt, a plain state_dict or safetensors."""
    path = Path(path).expanduser()
    _require_file(path)
    # One disk read: a checkpoint of usual size is hashed and parsed from the same bytes.
    data = path.read_bytes() if path.stat().st_size <= READ_ONCE_LIMIT else None
    sha256 = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path)
    if _is_safetensors(path, data):
        state_dict, hyper_parameters = _read_safetensors(path, data)
        fmt = "safetensors"
    else:
        fmt, state_dict, hyper_parameters = _split_loaded(path, safe_torch_load(path, data))
    return CheckpointContents(
        path=str(path),
        format=fmt,
        state_dict=state_dict,
        hyper_parameters=hyper_parameters,
        sha256=sha256,
    )


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix` with the prefix removed (e.g. "model.encoder.")."""
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def check_weights(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> str | None:
    """None when `weights` fit `model` exactly, else one line naming missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshaped = sorted(
        f"{key} {tuple(weights[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(weights)
        if tuple(weights[key].shape) != tuple(expected[key].shape)
    )
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {_listed(unexpected)}")
    if misshaped:
        parts.append(f"mis-shaped {len(misshaped)}: {_listed(misshaped)}")
    return "; ".join(parts) or None


def load_weights(model: nn.Module, weights: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strictly load `weights` into `model`, or raise one CheckpointError describing every mismatch."""
    problem = check_weights(model, weights)
    if problem:
        raise CheckpointError(
            f"{source} does not fit the {type(model).__name__} architecture ({problem}); "
            "check the model size/preset or the checkpoint"
        )
    model.load_state_dict(dict(weights), strict=True)
