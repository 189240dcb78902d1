"""`clay embed-locations`: SatCLIP embeddings of points (a file, or a lon/lat grid over a bbox) as GeoParquet."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from clay_core.cli._common import add_device_argument, parse_bbox
from clay_core.errors import ClayInputError
from clay_core.progress import Reporter


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
    parser.add_argument("--bbox", metavar="W,S,E,N", help="grid mode: W,S,E,N in degrees")
    parser.add_argument("--spacing", type=float, help="grid mode: cell size in degrees")
    parser.add_argument("--lon-column", help="CSV longitude column (default: lon/longitude/x)")
    parser.add_argument("--lat-column", help="CSV latitude column (default: lat/latitude/y)")
    parser.add_argument("--layer", help="layer of a multi-layer vector file")
    parser.add_argument("--id-field", help="field with unique point ids (default: row number)")
    add_device_argument(parser)
    parser.add_argument("--batch-size", type=int, default=8192, help="points per batch")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def _load_points(args: argparse.Namespace) -> Any:  # PointSet
    from clay_core.locations import grid_points, read_points

    if args.points and (args.bbox or args.spacing):
        raise ClayInputError("give either POINTS or --bbox with --spacing (a grid), not both")
    if args.points:
        return read_points(
            args.points,
            lon_column=args.lon_column,
            lat_column=args.lat_column,
            layer=args.layer,
            id_field=args.id_field,
        )
    if args.bbox is None or args.spacing is None:
        raise ClayInputError("no points: give a POINTS file, or --bbox W,S,E,N and --spacing DEG for a grid")
    return grid_points(parse_bbox(args.bbox), args.spacing)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    import numpy as np

    from clay_core.locations import load_satclip, write_point_embeddings
    from clay_core.models.satclip import check_lonlat
    from clay_core.parquet import check_writable

    if not (args.checkpoint or args.model):
        raise ClayInputError("no model: pass --checkpoint satclip-*.ckpt (or --model satclip-l10 for random weights)")
    if args.batch_size < 1:
        raise ClayInputError("--batch-size must be at least 1")
    output = Path(args.output).expanduser()
    check_writable(output, args.overwrite)  # before any point is read or embedded
    points = _load_points(args)
    check_lonlat(points.lonlat)
    model = load_satclip(args.checkpoint or args.model, device=args.device)
    if args.model:
        reporter.log(
            f"{args.model} has random weights: use --checkpoint with a released SatCLIP .ckpt for real embeddings",
            level="warning",
        )
    total = len(points.lonlat)
    reporter.start(total, f"embedding {total} points with {model.name} on {model.plan.device}")
    started = time.perf_counter()
    parts = []
    for start in range(0, total, args.batch_size):
        chunk = points.lonlat[start : start + args.batch_size]
        parts.append(model.embed_float64(chunk).astype(np.float32))
        reporter.advance(len(chunk))
    seconds = time.perf_counter() - started
    embeddings = np.concatenate(parts)
    metadata = model.metadata("location")
    metadata.update({"points": total, "source": args.points or f"grid bbox={args.bbox} spacing={args.spacing}"})
    path = write_point_embeddings(output, points, embeddings, metadata, overwrite=args.overwrite)
    result = {
        "output": str(path),
        "points": total,
        "model": model.name,
        "embedding_dim": int(embeddings.shape[1]),
        "device": model.plan.device,
        "seconds": round(seconds, 3),
        "points_per_second": round(total / seconds, 1) if seconds > 0 else None,
    }
    reporter.result(result)
    if args.progress != "json":
        print(f"wrote {total} point embeddings ({embeddings.shape[1]}-d) to {path}")
    return 0
