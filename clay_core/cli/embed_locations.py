"""`clay embed-locations`: SatCLIP embeddings of points (a file, or a lon/lat grid over a bbox) as GeoParquet."""

from __future__ import annotations

import argparse
from pathlib import Path

from clay_core.cli._common import add_device_argument, parse_bbox
from clay_core.location_job import DEFAULT_BATCH_SIZE, LocationJob
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
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="points per batch")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    job = LocationJob(
        output=Path(args.output),
        checkpoint=args.checkpoint,
        preset=args.model,
        points=args.points,
        bbox=parse_bbox(args.bbox) if args.bbox else None,
        spacing=args.spacing,
        lon_column=args.lon_column,
        lat_column=args.lat_column,
        layer=args.layer,
        id_field=args.id_field,
        device=args.device,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    summary = job.run(reporter)
    reporter.result(summary.as_dict())
    if args.progress != "json":
        print(f"wrote {summary.points} point embeddings ({summary.embedding_dim}-d) to {summary.output}")
    return 0
