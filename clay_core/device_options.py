"""The device and precision names the command line and the plugin offer, without importing torch.

`clay --version` and every worker start parse arguments before any model loads; importing torch just for
these tuples cost ~1.7 s per call. `clay_core.device` re-exports them for existing callers.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
