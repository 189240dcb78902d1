"""`clay embed-locations`: SatCLIP embeddings of points (a file, or a lon/lat grid over a bbox) as GeoParquet."""

from __future__ import annotations

import argparse
import time

import numpy as np

from clay_core.device import DEVICES
from clay_core.errors import ClayInputError
from clay_core.progress import Reporter


def _bbox(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bbox {text!r} must be four numbers W,S,E,N") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"bbox {text!r} must be four numbers W,S,E,N")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed-locations",
        help="SatCLIP location embeddings of points (file or lon/lat grid) to GeoParquet",
        description="Embed points with a SatCLIP location encoder. POINTS is a CSV with lon/lat columns (degrees) "
                    "or a vector file of points (GeoJSON, GeoPackage, ...; reprojected to lon/lat). Without POINTS, "
                    "--bbox and --spacing make a grid of cell centres.",
    )
    parser.add_argument("points", nargs="?", help="CSV (lon,lat columns) or point vector file")
    parser.add_argument("-o", "--output", required=True, help="output GeoParquet file (.gpq/.parquet)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", help="SatCLIP .ckpt (e.g. satclip-resnet18-l10.ckpt)")
    model.add_argument("--model", help="preset name (satclip-l10, satclip-l40: random weights, for testing)")
    parser.add_argument("--bbox", type=_bbox, help="grid mode: W,S,E,N in degrees")
    parser.add_argument("--spacing", type=float, help="grid mode: cell size in degrees")
    parser.add_argument("--lon-column", help="CSV longitude column (default: lon/longitude/x)")
    parser.add_argument("--lat-column", help="CSV latitude column (default: lat/latitude/y)")
    parser.add_argument("--layer", help="layer of a multi-layer vector file")
    parser.add_argument("--id-field", help="field with unique point ids (default: row number)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--batch-size", type=int, default=8192, help="points per batch")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def _load_points(args: argparse.Namespace):  # -> PointSet
    from clay_core.locations import grid_points, read_points

    if args.points and (args.bbox or args.spacing):
        raise ClayInputError("give either POINTS or --bbox with --spacing (a grid), not both")
    if args.points:
        return read_points(args.points, lon_column=args.lon_column, lat_column=args.lat_column,
                           layer=args.layer, id_field=args.id_field)
    if args.bbox is None or args.spacing is None:
        raise ClayInputError("no points: give a POINTS file, or --bbox W,S,E,N and --spacing DEG for a grid")
    return grid_points(args.bbox, args.spacing)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from clay_core.locations import write_point_embeddings
    from clay_core.models import load_model
    from clay_core.models.satclip import SatCLIPLocationModel, check_lonlat

    if not (args.checkpoint or args.model):
        raise ClayInputError("no model: pass --checkpoint satclip-*.ckpt (or --model satclip-l10 for random weights)")
    if args.batch_size < 1:
        raise ClayInputError("--batch-size must be at least 1")
    points = _load_points(args)
    check_lonlat(points.lonlat)
    model = load_model(args.checkpoint or args.model, device=args.device, precision="fp32")
    if not isinstance(model, SatCLIPLocationModel):
        raise ClayInputError(f"{args.checkpoint or args.model} is a {model.family} model; embed-locations needs "
                             "a SatCLIP location encoder checkpoint")
    if args.model:
        reporter.log(f"{args.model} has random weights: use --checkpoint with a released SatCLIP .ckpt for real "
                     "embeddings", level="warning")
    total = len(points.lonlat)
    reporter.start(total, f"embedding {total} points with {model.name} on {model.plan.device}")
    started = time.perf_counter()
    parts = []
    for start in range(0, total, args.batch_size):
        chunk = points.lonlat[start:start + args.batch_size]
        parts.append(model.embed_float64(chunk).astype(np.float32))
        reporter.advance(len(chunk))
    seconds = time.perf_counter() - started
    embeddings = np.concatenate(parts)
    metadata = model.metadata("location")
    metadata.update({"points": total, "source": args.points or f"grid bbox={args.bbox} spacing={args.spacing}"})
    path = write_point_embeddings(args.output, points, embeddings, metadata, overwrite=args.overwrite)
    result = {"output": str(path), "points": total, "model": model.name, "embedding_dim": int(embeddings.shape[1]),
              "device": model.plan.device, "seconds": round(seconds, 3),
              "points_per_second": round(total / seconds, 1) if seconds > 0 else None}
    reporter.result(result)
    if args.progress != "json":
        print(f"wrote {total} point embeddings ({embeddings.shape[1]}-d) to {path}")
    return 0
