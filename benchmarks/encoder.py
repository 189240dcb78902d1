"""Encoder benchmark: prints one JSON object (chips/s, GFLOP/s, fraction of the measured FLOP bound, peak RSS).

    . scripts/env.sh && .venv/bin/python benchmarks/encoder.py [--model clay-v0-small] [--chip-size 512]
        [--chips 3] [--batch-sizes 1,auto] [--threads N] [--no-gpu]

Default run: small preset at 512 px (about 350 GFLOP per chip), a few chips: ~1-2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clay_core.benchmark import run_encoder_benchmark  # noqa: E402
from clay_core.cli.bench import parse_batch_sizes  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clay-v0-small")
    parser.add_argument("--chip-size", type=int, default=512)
    parser.add_argument("--chips", type=int, default=3)
    parser.add_argument("--batch-sizes", type=parse_batch_sizes, default=[1, "auto"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gpu-chips", type=int, default=64)
    parser.add_argument("--no-gpu", action="store_true")
    args = parser.parse_args(argv)
    report = run_encoder_benchmark(
        model_name=args.model,
        image_size=args.chip_size,
        chips=args.chips,
        batch_sizes=args.batch_sizes,
        threads=args.threads,
        gpu=not args.no_gpu,
        gpu_chips=args.gpu_chips,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
