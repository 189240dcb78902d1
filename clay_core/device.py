"""Device and precision policy: which device runs the model, in which precision, with how many threads.

Policy (measured, not guessed):
- device: CUDA > MPS > CPU when "auto".
- precision: bf16 autocast only on CUDA with native bf16 (compute capability >= 8.0). On older CUDA,
  fp16 only when the caller verified it matches fp32 (see `fp16_matches_fp32`), else fp32. On CPU
  always fp32: on CPUs without native bf16 (AVX2 only), bf16 matmul ran ~300x slower than fp32 here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

# DEVICES is re-exported for existing callers; the names live in device_options so parsers need no torch.
from clay_core.device_options import DEVICES, PRECISIONS  # noqa: F401
from clay_core.errors import ClayInputError

_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DevicePlan:
    """What will run where: shown by `clay info` and in the QGIS dock before a run."""

    device: str  # torch device string: "cpu", "cuda:0", "mps"
    name: str  # human name: GPU model or CPU description
    capability: str | None  # CUDA compute capability "8.0", else None
    precision: str  # "fp32" | "bf16" | "fp16"
    threads: int  # torch intra-op threads (CPU work, data loading)
    reason: str  # one sentence: why this precision

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self.precision]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def resolve_device(requested: str = "auto") -> torch.device:
    """Turn "auto"/"cpu"/"cuda"/"cuda:1"/"mps" into an available torch.device, or say why not."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ClayInputError(
                f"device {requested!r} requested but this torch ({torch.__version__}) sees no CUDA GPU; "
                "use --device cpu (or auto), or install a CUDA build of torch"
            )
        device = torch.device(requested)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ClayInputError(f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
    if requested == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ClayInputError("device 'mps' requested but Apple MPS is not available; use --device cpu")
        return torch.device("mps")
    if requested == "cpu":
        return torch.device("cpu")
    raise ClayInputError(f"unknown device {requested!r}; use one of auto, cpu, cuda, cuda:N, mps")


def cuda_capability(device: torch.device) -> tuple[int, int] | None:
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


def resolve_precision(device: torch.device, requested: str = "auto") -> tuple[str, str]:
    """Return (precision, reason) for `device`. Explicit requests that would be wrong are refused."""
    requested = (requested or "auto").lower()
    if requested not in PRECISIONS:
        raise ClayInputError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    capability = cuda_capability(device)
    if requested == "auto":
        if capability is not None and capability >= (8, 0):  # native bf16
            return "bf16", f"CUDA compute capability {capability[0]}.{capability[1]} has native bf16"
        if device.type == "cuda":
            return "fp32", "this GPU has no native bf16 (compute capability < 8.0); fp16 only when verified"
        if device.type == "mps":
            return "fp32", "fp32 on Apple MPS"
        return "fp32", "fp32 on CPU (bf16 without native CPU support is ~300x slower)"
    if requested == "bf16" and device.type == "cpu":
        raise ClayInputError(
            "bf16 on CPU is refused: without native bf16 it runs ~300x slower than fp32; use --precision fp32"
        )
    if requested == "fp16" and device.type != "cuda":
        raise ClayInputError("fp16 is only supported on CUDA; use --precision fp32")
    return requested, f"{requested} requested explicitly"


def default_threads() -> int:
    """Threads torch should use: honour OMP_NUM_THREADS, else the CPUs this process may run on."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_threads(threads: int | None = None) -> int:
    n = threads or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def plan_device(device: str = "auto", precision: str = "auto", threads: int | None = None) -> DevicePlan:
    """Decide device, precision and threads once; everything that runs the model uses this plan."""
    torch_device = resolve_device(device)
    chosen, reason = resolve_precision(torch_device, precision)
    n_threads = configure_threads(threads)
    capability = cuda_capability(torch_device)
    if torch_device.type == "cuda":
        name = torch.cuda.get_device_name(torch_device)
    elif torch_device.type == "mps":
        name = "Apple MPS"
    else:
        name = f"{_cpu_name()} ({n_threads} threads)"
    return DevicePlan(
        device=str(torch_device),
        name=name,
        capability=f"{capability[0]}.{capability[1]}" if capability else None,
        precision=chosen,
        threads=n_threads,
        reason=reason,
    )


@contextlib.contextmanager
def autocast(plan: DevicePlan) -> Iterator[None]:
    """bf16/fp16 autocast on CUDA per the plan; a no-op for fp32."""
    if plan.precision == "fp32":
        yield
        return
    with torch.autocast(device_type=plan.torch_device.type, dtype=plan.dtype):
        yield


def fp16_matches_fp32(run: Callable[[], torch.Tensor], reference: torch.Tensor, min_cosine: float = 0.999) -> bool:
    """Check an fp16 run against fp32 output; older GPUs only get fp16 when this holds."""
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        candidate = run().float()
    if not torch.isfinite(candidate).all():
        return False
    cosine = torch.nn.functional.cosine_similarity(candidate.flatten(1), reference.float().flatten(1), dim=1)
    return bool((cosine >= min_cosine).all())


# ----------------------------------------------------------------------------------------------
# Memory estimates: warn before a batch that will not fit (users ask for this before huge jobs)
# ----------------------------------------------------------------------------------------------

_BYTES_PER_VALUE = {"fp32": 4, "bf16": 2, "fp16": 2}
DEFAULT_WORKSPACE_BYTES = 64 << 20


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one inference batch through a transformer encoder, in bytes."""

    batch_size: int
    weights_bytes: int  # fp32 weights, plus their half-precision autocast copies under bf16/fp16
    inputs_bytes: int  # the float32 batch itself
    activations_bytes: int  # the largest set of tensors alive at once inside one block
    staging_bytes: int = 0  # tensors alive while the input becomes tokens (patchify copies)
    workspace_bytes: int = 0  # BLAS packing buffers and allocator slack, measured as a fixed cost

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.inputs_bytes
            + max(self.activations_bytes, self.staging_bytes)
            + self.workspace_bytes
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def estimate_encoder_memory(
    *,
    parameters: int,
    tokens: int,
    dim: int,
    inner_dim: int,
    mlp_hidden: int,
    heads: int,
    batch_size: int,
    input_values: int,
    precision: str = "fp32",
    attention_matrix: bool = False,
    staging_bytes: int = 0,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> MemoryEstimate:
    """Estimate peak memory for `batch_size` items through a pre-norm ViT without autograd.

    Inside one block at most these live together: the residual stream, its LayerNorm, and either
    q/k/v + the attention output (attention) or the MLP hidden twice (linear + GELU). Fused SDPA
    does not materialise the N x N scores; set `attention_matrix` for the explicit-softmax path.
    `input_values` is the number of float32 values per item (C*H*W plus metadata); `staging_bytes`
    what the model keeps alive while turning the input into tokens (it peaks before the blocks do);
    the workspace default (64 MiB) is the growth measured beyond the tensors for batch 1 of the small
    model on CPU (BLAS packing buffers, allocator slack)."""
    if batch_size <= 0 or tokens <= 0:
        raise ClayInputError(f"batch size ({batch_size}) and token count ({tokens}) must be positive")
    if precision not in _BYTES_PER_VALUE:
        raise ClayInputError(f"unknown precision {precision!r}; use one of {', '.join(_BYTES_PER_VALUE)}")
    value_bytes = _BYTES_PER_VALUE[precision]
    weights = parameters * 4 + (parameters * value_bytes if precision != "fp32" else 0)
    attention_values = 2 * dim + 3 * inner_dim + inner_dim + (heads * tokens if attention_matrix else 0)
    mlp_values = 2 * dim + 2 * mlp_hidden
    per_token = max(attention_values, mlp_values)
    activations = batch_size * tokens * per_token * value_bytes
    return MemoryEstimate(
        batch_size=batch_size,
        weights_bytes=weights,
        inputs_bytes=batch_size * input_values * 4,
        activations_bytes=activations,
        staging_bytes=staging_bytes,
        workspace_bytes=workspace_bytes,
    )


def available_memory_bytes(plan: DevicePlan) -> int | None:
    """Free memory on the plan's device (CUDA: free device memory; CPU: MemAvailable), None if unknown."""
    if plan.torch_device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(plan.torch_device)
        return int(free)
    if plan.torch_device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="utf-8") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def largest_batch_within(estimate: Callable[[int], MemoryEstimate], budget_bytes: int, limit: int = 1024) -> int:
    """The largest batch size (<= limit) whose estimate fits in `budget_bytes`; 0 when even 1 does not."""
    if estimate(1).total_bytes > budget_bytes:
        return 0
    low, high = 1, limit
    while low < high:  # estimates grow monotonically with the batch size
        middle = (low + high + 1) // 2
        if estimate(middle).total_bytes <= budget_bytes:
            low = middle
        else:
            high = middle - 1
    return low
