"""`clay bench`: encoder chips/s against this machine's measured matmul peak."""

from __future__ import annotations

import argparse

from clay_core.cli._common import emit_result
from clay_core.progress import Reporter


def parse_batch_sizes(text: str) -> list[int | str]:
    """argparse type: comma-separated positive batch sizes or 'auto' (benchmarks/encoder.py uses it too)."""
    sizes: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if part == "auto":
            sizes.append(part)
        elif part.isdigit() and int(part) > 0:
            sizes.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"batch size {part!r} must be a positive integer or 'auto'")
    return sizes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure encoder throughput (chips/s, fraction of FLOP bound)",
        description="Times the encoder of a preset (random weights) on random chips, on the CPU and on a CUDA GPU "
        "when there is one, against this machine's measured matmul peak. The defaults (clay-v0-small, 512 px: "
        "354 GFLOP per chip) are slow on a small CPU; --model clay-v0-tiny --chip-size 128 is a quick look.",
    )
    parser.add_argument("--model", default="clay-v0-small", help="preset name (default clay-v0-small)")
    parser.add_argument("--chip-size", type=int, default=512, help="chip size in pixels (default 512)")
    parser.add_argument("--chips", type=int, default=3, help="chips timed per CPU run (default 3)")
    parser.add_argument(
        "--batch-sizes",
        type=parse_batch_sizes,
        default=[1, "auto"],
        help="comma-separated CPU batch sizes; 'auto' picks one from the memory estimate",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all allowed CPUs)")
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA section even when a GPU exists")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def _summary(report: dict) -> str:
    lines = [
        f"{report['model']} {report['image_size']} px: {report['gflop_per_chip']} GFLOP/chip, "
        f"CPU fp32 matmul peak {report['cpu']['matmul_fp32_peak_gflops']} GFLOP/s ({report['cpu']['device']})"
    ]
    for section in ("cpu", "gpu"):
        for run in report.get(section, {}).get("runs", []):
            lines.append(
                f"  {section} {run.get('precision', 'fp32')} batch {run['batch_size']}: "
                f"{run['chips_per_s']} chips/s, {run['achieved_gflops']} GFLOP/s, "
                f"{run['fraction_of_flop_bound']:.0%} of the FLOP bound"
            )
    lines.append(f"  peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB")
    return "\n".join(lines)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core.benchmark import run_encoder_benchmark

    report = run_encoder_benchmark(
        model_name=args.model,
        image_size=args.chip_size,
        chips=args.chips,
        batch_sizes=args.batch_sizes,
        threads=args.threads,
        gpu=not args.no_gpu,
        log=reporter.log,
    )
    emit_result(reporter, report, args.json, _summary)
    return 0
