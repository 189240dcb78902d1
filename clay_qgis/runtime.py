"""The managed Clay runtime: a Python environment with torch and the plugin's own clay_core, made by the plugin.

QGIS's Python cannot hold torch (no pip, ABI clashes), so the worker (worker.py) runs in a separate environment.
This module finds a base Python on the user's platform, creates a virtual environment in a folder the user can
write to (no admin rights), installs torch (CUDA build when an NVIDIA driver is there) and the clay_core that is
bundled in the plugin (so plugin and worker always match), verifies it with `python -m clay_core info --json` and
records what it did in a stamp file, so a second run only verifies and a plugin upgrade re-installs clay_core.

No Qt/QGIS import at module level (the QGIS setting is written by the algorithm): the pieces are plain functions
that tests drive with fake folders and a fake `nvidia-smi`. Every failure is a RuntimeSetupError whose message is
one line naming the fix.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clay_core.provenance import redact

STAMP_NAME = "clay-runtime.json"
MIN_PYTHON = (3, 11)  # pyproject's requires-python
PLUGIN_DIR = Path(__file__).resolve().parent
WHEEL_DIR = PLUGIN_DIR / "wheels"  # written by scripts/package_plugin.py into the release zip
RERUN = "then run Set up Clay runtime again (Plugins > Clay embeddings, or clay:setupruntime)"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
DEFAULT_TORCH = "torch>=2.4"
# CUDA builds of torch, newest first: (the CUDA version the driver must support, where the build comes from).
# PyPI's Linux torch is itself a CUDA build (12.8 for current releases); older drivers need an older build from
# the PyTorch index. Windows wheels on PyPI are CPU-only, so there every CUDA build comes from the PyTorch index.
CUDA_BUILDS = [((12, 8), "cu128"), ((12, 6), "cu126"), ((11, 8), "cu118")]
PYPI_LINUX_CUDA = (12, 8)


class RuntimeSetupError(RuntimeError):
    """Setting up the runtime failed; the message is one line that says what to do."""


class SetupCancelled(RuntimeSetupError):
    pass


# ----------------------------------------------------------------------------------------------
# Base Python
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BasePython:
    """What creates the environment: a Python with venv/ensurepip, or uv (which needs neither)."""

    python: str | None  # interpreter used as the environment's base (None: uv picks/downloads one)
    uv: str | None = None  # the uv executable when uv makes the environment
    version: str = ""

    def describe(self) -> str:
        what = f"Python {self.version} ({self.python})" if self.python else "a Python chosen by uv"
        return f"{what} with uv ({self.uv})" if self.uv else what


@dataclass(frozen=True)
class ProbeResult:
    version: tuple[int, int, int]
    has_venv: bool


def probe_python(path: str, timeout_s: float = 30.0) -> ProbeResult | None:
    """Version and venv support of an interpreter; None when it does not run as a Python."""
    code = (
        "import sys, json\ntry:\n import venv, ensurepip\n ok = True\nexcept ImportError:\n ok = False\n"
        "print(json.dumps([list(sys.version_info[:3]), ok]))"
    )
    try:
        done = subprocess.run(
            [path, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            env=clean_environment(),
        )
        version, has_venv = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return ProbeResult(tuple(version), bool(has_venv))


def python_candidates(
    platform: str = sys.platform,
    executable: str = sys.executable,
    base_prefix: str = sys.base_prefix,
    path: str | None = None,
) -> list[str]:
    """Interpreters to try, best first. Inside QGIS, sys.executable is QGIS itself (qgis.exe, the QGIS app),
    never a Python: on Windows (OSGeo4W, standalone installer) and macOS the bundle's own interpreter lies next
    to it or under sys.base_prefix; on Linux QGIS uses the system python3."""
    exe_dir = Path(executable).resolve().parent
    prefix = Path(base_prefix)
    found: list[Path] = []
    if platform.startswith("win"):
        found += [prefix / "python.exe", exe_dir / "python.exe", exe_dir / "python3.exe"]
        found += sorted((exe_dir.parent / "apps").glob("Python3*/python.exe"), key=_numeric_name, reverse=True)
    elif platform == "darwin":
        found += [exe_dir / "bin" / "python3", prefix / "bin" / "python3", exe_dir / "python3"]
        found += sorted(prefix.glob("bin/python3.*[0-9]"), key=_numeric_name, reverse=True)
    else:
        found += [Path("/usr/bin/python3"), prefix / "bin" / "python3"]
    on_path = shutil.which("python3", path=path) or shutil.which("python", path=path)
    if on_path:
        found.append(Path(on_path))
    if Path(executable).name.lower().startswith("python"):
        found.append(Path(executable))  # plain Python (tests, a script): itself is a candidate too
    qgis_executable = _resolved(Path(executable)) if not Path(executable).name.lower().startswith("python") else None
    result: list[str] = []
    for candidate in found:
        if not candidate.is_file() or _resolved(candidate) == qgis_executable:
            continue
        if str(candidate) not in result:
            result.append(str(candidate))
    return result


def _numeric_name(path: Path) -> tuple[int, ...]:
    """Python312 > Python39 (a string sort says otherwise)."""
    name = path.parent.name if path.name.lower() == "python.exe" else path.name
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def find_base_python(
    platform: str = sys.platform,
    executable: str = sys.executable,
    base_prefix: str = sys.base_prefix,
    path: str | None = None,
    probe: Callable[[str], ProbeResult | None] = probe_python,
) -> BasePython:
    """The first candidate with Python >= 3.11 and venv; else uv (with that Python, or one uv provides);
    else a RuntimeSetupError that names the package/installer to get."""
    override = os.environ.get("CLAY_BASE_PYTHON")
    candidates = [override] if override else python_candidates(platform, executable, base_prefix, path)
    uv = shutil.which("uv", path=path)
    too_old, without_venv = [], []
    for candidate in candidates:
        probed = probe(candidate)
        if probed is None:
            continue
        version = ".".join(map(str, probed.version))
        if probed.version[:2] < MIN_PYTHON:
            too_old.append(f"{candidate} ({version})")
        elif probed.has_venv:
            return BasePython(candidate, None, version)
        else:
            without_venv.append((candidate, version))
    if uv:
        python, version = without_venv[0] if without_venv else (None, "")
        return BasePython(python, uv, version)
    raise RuntimeSetupError(_no_python_message(platform, without_venv, too_old))


def _no_python_message(platform: str, without_venv: list[tuple[str, str]], too_old: list[str]) -> str:
    if without_venv:
        python, version = without_venv[0]
        if platform.startswith("linux") and Path("/etc/debian_version").exists():
            return (
                f"{python} (Python {version}) has no venv module: install the Debian package python3-venv "
                f"(sudo apt install python3-venv), {RERUN}"
            )
        return (
            f"{python} (Python {version}) has no venv module: install your distribution's venv package for "
            f"Python {version} or uv (https://docs.astral.sh/uv/), {RERUN}"
        )
    need = ".".join(map(str, MIN_PYTHON))
    old = f" (found only {', '.join(too_old)})" if too_old else ""
    return (
        f"no Python {need} or newer was found{old}: install Python {need}+ (python.org) or uv "
        f"(https://docs.astral.sh/uv/), {RERUN}"
    )


# ----------------------------------------------------------------------------------------------
# torch: which build
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchChoice:
    requirement: str
    pip_args: tuple[str, ...] = ()  # where the build comes from (empty: the configured index, PyPI)
    reason: str = ""


def nvidia_cuda_version(path: str | None = None, timeout_s: float = 15.0) -> tuple[int, int] | None:
    """The highest CUDA version the NVIDIA driver supports ("CUDA Version: 12.4" in nvidia-smi's header);
    None without an NVIDIA driver."""
    smi = shutil.which("nvidia-smi", path=path)
    if smi is None:
        return None
    try:
        done = subprocess.run([smi], capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", done.stdout)
    if done.returncode != 0 or match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def choose_torch(
    requested: str = "", platform: str = sys.platform, path: str | None = None, user_pip_args: Iterable[str] = ()
) -> TorchChoice:
    """An explicit requirement wins (taken from the configured index as it is). Otherwise: a CUDA build the
    driver can run when nvidia-smi reports one, the CPU build otherwise. An index/mirror given by the user
    (PIP_ARGS) replaces the PyTorch index: offline mirrors must decide where torch comes from."""
    if requested.strip():
        return TorchChoice(requested.strip(), (), "as requested")
    own_index = any(
        arg.split("=")[0] in {"--index-url", "-i", "--find-links", "-f", "--no-index"} for arg in user_pip_args
    )
    cuda = nvidia_cuda_version(path)
    if cuda is not None:
        build = next((name for need, name in CUDA_BUILDS if cuda >= need), None)
        driver = f"NVIDIA driver supports CUDA {cuda[0]}.{cuda[1]}"
        if build is None:
            return _cpu_choice(platform, own_index, f"{driver}, older than any torch CUDA build: CPU build")
        if platform.startswith("linux") and cuda >= PYPI_LINUX_CUDA:
            return TorchChoice(DEFAULT_TORCH, (), f"{driver}: PyPI's torch (a CUDA build on Linux)")
        if own_index:
            return TorchChoice(DEFAULT_TORCH, (), f"{driver}: torch from your index ({build} wanted)")
        where = (
            "the PyTorch index (PyPI's Windows torch is CPU-only)"
            if platform.startswith("win")
            else "the PyTorch index"
        )
        return TorchChoice(
            DEFAULT_TORCH, ("--index-url", f"{PYTORCH_INDEX}/{build}"), f"{driver}: CUDA build {build} from {where}"
        )
    return _cpu_choice(platform, own_index, "no NVIDIA GPU found: CPU build")


def _cpu_choice(platform: str, own_index: bool, reason: str) -> TorchChoice:
    if platform.startswith("linux") and not own_index:
        # PyPI's Linux torch is the CUDA build (several GB of CUDA libraries); the CPU build is ~200 MB.
        return TorchChoice(DEFAULT_TORCH, ("--index-url", f"{PYTORCH_INDEX}/cpu"), f"{reason} from the PyTorch index")
    return TorchChoice(DEFAULT_TORCH, (), reason)


# ----------------------------------------------------------------------------------------------
# What gets installed: the clay_core bundled in the plugin
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClayCorePackage:
    target: str  # a wheel file, or the checkout folder with pyproject.toml
    sha256: str  # of the wheel / of the checkout's sources: a change re-installs clay_core
    version: str


def bundled_clay_core(plugin_dir: Path = PLUGIN_DIR) -> ClayCorePackage:
    """The wheel packed into the release zip (scripts/package_plugin.py); in a development checkout the checkout
    itself (pip builds it)."""
    wheels = sorted((plugin_dir / "wheels").glob("*.whl"))
    if wheels:
        wheel = wheels[-1]
        return ClayCorePackage(str(wheel), _sha256(wheel.read_bytes()), _wheel_version(wheel.name))
    checkout = plugin_dir.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "clay_core").is_dir():
        digest = hashlib.sha256()
        for source in sorted([checkout / "pyproject.toml", *(checkout / "clay_core").rglob("*.py")]):
            digest.update(str(source.relative_to(checkout)).encode() + b"\0" + source.read_bytes())
        return ClayCorePackage(str(checkout), digest.hexdigest(), _checkout_version(checkout))
    raise RuntimeSetupError(
        f"the plugin folder {plugin_dir} holds no clay_core package (wheels/*.whl): "
        "reinstall the plugin from its release zip, " + RERUN
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel_version(name: str) -> str:
    parts = name.split("-")
    return parts[1] if len(parts) > 2 else ""


def _checkout_version(checkout: Path) -> str:
    match = re.search(r'__version__\s*=\s*"([^"]+)"', (checkout / "clay_core" / "__init__.py").read_text())
    return match.group(1) if match else ""


# ----------------------------------------------------------------------------------------------
# The environment
# ----------------------------------------------------------------------------------------------


def venv_python(folder: Path, platform: str = sys.platform) -> Path:
    return folder / ("Scripts/python.exe" if platform.startswith("win") else "bin/python")


def is_managed(python: str | Path) -> bool:
    """True for the interpreter of a runtime made here (its environment holds our stamp)."""
    return (Path(python).parent.parent / STAMP_NAME).is_file()


def read_stamp(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_stamp(folder: Path, stamp: dict[str, Any]) -> None:
    tmp = folder / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=2), encoding="utf-8")
    os.replace(tmp, folder / STAMP_NAME)


# Set by QGIS (OSGeo4W, the macOS bundle) or a shell for QGIS's own GDAL/PROJ. The runtime's rasterio and pyproj
# wheels carry their own GDAL/PROJ and data; pointed at an older proj.db they fail ("proj.db contains
# DATABASE.LAYOUT.VERSION.MINOR = 2 whereas a number >= 6 is expected"), seen with Debian 12's PROJ_DATA.
QGIS_DATA_VARIABLES = {"PROJ_DATA", "PROJ_LIB", "GDAL_DATA", "GDAL_DRIVER_PATH"}


def clean_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for pip and the runtime: without QGIS's PYTHONPATH/PYTHONHOME (they would mix QGIS's
    packages into the new environment), without a user's active virtual environment, and without the data
    paths of QGIS's own GDAL/PROJ (the runtime's wheels bring theirs)."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "CONDA_PREFIX"} | QGIS_DATA_VARIABLES
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONNOUSERSITE"] = "1"  # ~/.local packages must not satisfy the runtime's requirements
    env["PIP_NO_INPUT"] = "1"  # stdin is closed: a password prompt of a private index must fail, not hang
    env.update(extra or {})
    return env


class Feedback:
    """What the set-up reports to (a QgsProcessingFeedback in QGIS; tests pass their own)."""

    def pushInfo(self, text: str) -> None: ...  # noqa: N802 - QGIS API names
    def pushConsoleInfo(self, text: str) -> None: ...  # noqa: N802
    def setProgress(self, percent: float) -> None: ...  # noqa: N802
    def setProgressText(self, text: str) -> None: ...  # noqa: N802
    def isCanceled(self) -> bool:
        return False  # noqa: N802


@dataclass
class SetupPlan:
    folder: Path
    base: BasePython
    torch: TorchChoice
    clay_core: ClayCorePackage
    pip_args: list[str] = field(default_factory=list)
    plugin_version: str = ""

    def stamp(self) -> dict[str, Any]:
        return {
            "plugin_version": self.plugin_version,
            "clay_core_version": self.clay_core.version,
            "clay_core_sha256": self.clay_core.sha256,
            "torch": self.torch.requirement,
            "torch_pip_args": list(self.torch.pip_args),
            "pip_args": self.pip_args,
            "base_python": self.base.python or "",
            "uv": bool(self.base.uv),
        }


@dataclass
class SetupResult:
    python: str
    report: dict[str, Any]
    installed: bool  # False: the runtime was already complete and only verified
    seconds: float
    steps: list[str]


def setup_runtime(
    folder: Path,
    torch: str = "",
    pip_args: str | Iterable[str] = "",
    feedback: Feedback | None = None,
    plugin_version: str = "",
    base: BasePython | None = None,
    clay_core: ClayCorePackage | None = None,
) -> SetupResult:
    """Create or update the runtime in `folder` and verify it. Idempotent: with an up-to-date stamp it only
    verifies (seconds); a changed clay_core (plugin upgrade), torch requirement or pip options re-install."""
    started = time.monotonic()
    feedback = feedback or Feedback()
    folder = Path(folder).expanduser().absolute()
    args = split_pip_args(pip_args) if isinstance(pip_args, str) else list(pip_args)
    clay_core = clay_core or bundled_clay_core()
    previous = read_stamp(folder)
    force_clay_core = bool(previous) and previous.get("clay_core_sha256") != clay_core.sha256
    installed_torch = (previous.get("torch"), tuple(previous.get("torch_pip_args", ())))
    python = venv_python(folder)
    _step(feedback, 1, "Checking the runtime folder")
    _check_folder(folder)
    if previous and python.is_file():
        plan_stamp_keys = {"clay_core_sha256": clay_core.sha256, "pip_args": args}
        if all(previous.get(key) == value for key, value in plan_stamp_keys.items()) and (
            not torch.strip() or previous.get("torch") == torch.strip()
        ):
            _step(feedback, 50, f"Runtime in {folder} is up to date; verifying it")
            try:
                report = verify(python, clay_core.version, feedback)
            except RuntimeSetupError as exc:
                # e.g. its base Python was removed by a QGIS upgrade: repair it instead of giving up.
                feedback.pushInfo(f"The runtime needs repair ({exc}); installing again")
                previous, force_clay_core = {}, True
            else:
                feedback.setProgress(100)
                return SetupResult(str(python), report, False, time.monotonic() - started, ["verify"])
    base = base or find_base_python()
    if not torch.strip() and installed_torch[0]:
        # Automatic on a re-run keeps the build installed before (re-run with TORCH set to change it).
        choice = TorchChoice(installed_torch[0], installed_torch[1], "as installed before")
    else:
        choice = choose_torch(torch, user_pip_args=args)
    plan = SetupPlan(folder, base, choice, clay_core, args, plugin_version)
    feedback.pushInfo(f"Base: {base.describe()}")
    feedback.pushInfo(f"torch: {choice.requirement} ({choice.reason})")
    steps = []
    if not _python_runs(python):
        _step(feedback, 3, f"Creating the environment in {folder}")
        create_environment(plan, feedback)
        steps.append("create")
    need_torch = (
        previous.get("torch") != choice.requirement
        or previous.get("pip_args") != args
        or previous.get("torch_pip_args") != list(choice.pip_args)
        or "create" in steps
    )
    if need_torch:
        _step(feedback, 10, f"Installing {choice.requirement} (the largest download: minutes on a slow line)")
        pip_install(plan, [*args, *choice.pip_args, choice.requirement], feedback, (10, 60))
        steps.append("torch")
    _step(feedback, 60, f"Installing clay_core {clay_core.version} and its dependencies")
    pip_install(plan, [*args, clay_core.target], feedback, (60, 88))
    if force_clay_core and "create" not in steps:
        # Same version number, other code (a rebuilt plugin): pip keeps an installed version, so force it.
        pip_install(plan, [*args, "--force-reinstall", "--no-deps", clay_core.target], feedback, (88, 90))
    steps.append("clay_core")
    _step(feedback, 90, "Verifying the runtime (python -m clay_core info)")
    report = verify(python, clay_core.version, feedback)
    write_stamp(folder, plan.stamp())
    feedback.setProgress(100)
    return SetupResult(str(python), report, True, time.monotonic() - started, steps)


def split_pip_args(text: str, posix: bool = os.name == "posix") -> list[str]:
    """Shell-like words; on Windows backslashes stay (D:\\wheels) and quotes only group ("C:\\my wheels").
    ValueError on an unbalanced quote."""
    words = shlex.split(text, posix=posix)
    if posix:
        return words
    return [word[1:-1] if len(word) > 1 and word[0] == word[-1] and word[0] in "\"'" else word for word in words]


def _step(feedback: Feedback, percent: float, text: str) -> None:
    if feedback.isCanceled():
        raise SetupCancelled(f"set-up cancelled; nothing is broken, {RERUN} to finish it")
    feedback.setProgress(percent)
    feedback.setProgressText(text)  # QGIS shows it above the bar and in the log


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise RuntimeSetupError(f"{folder} is a file, not a folder: choose another runtime folder, {RERUN}")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "pyvenv.cfg").exists():
        raise RuntimeSetupError(
            f"{folder} already holds other files: choose an empty or new folder for the runtime, {RERUN}"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RuntimeSetupError(
            f"cannot write to {folder} ({exc.strerror}): choose a folder you can write to, {RERUN}"
        ) from exc


def _python_runs(python: Path) -> bool:
    if not python.is_file():
        return False
    try:
        return (
            subprocess.run(
                [str(python), "-c", "import sys"],
                timeout=60,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                env=clean_environment(),
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


def create_environment(plan: SetupPlan, feedback: Feedback) -> None:
    """A fresh virtual environment (an existing broken one is replaced: the folder holds nothing else)."""
    base = plan.base
    if base.uv:
        command = [base.uv, "venv", "--clear", "--seed"]
        command += ["--python", base.python] if base.python else ["--python", ".".join(map(str, MIN_PYTHON))]
        command.append(str(plan.folder))
    else:
        assert base.python is not None  # only uv may leave the interpreter to choose (BasePython.python)
        command = [base.python, "-m", "venv", "--clear", str(plan.folder)]
    stream(command, feedback, (3, 9), "creating the environment")
    if not venv_python(plan.folder).is_file():
        raise RuntimeSetupError(
            f"{' '.join(command[:3])} made no Python in {plan.folder}: check that the base Python works, {RERUN}"
        )


def pip_install(plan: SetupPlan, arguments: list[str], feedback: Feedback, span: tuple[float, float]) -> None:
    python = str(venv_python(plan.folder))
    if plan.base.uv:
        command = [plan.base.uv, "pip", "install", "--python", python, *arguments]
    else:
        command = [python, "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check", *arguments]
    stream(command, feedback, span, "installing packages")


_PIP_PROGRESS = re.compile(r"^(Collecting|Downloading|Using cached|Building|Installing|Successfully|Requirement)")


def stream(command: list[str], feedback: Feedback, span: tuple[float, float], what: str) -> list[str]:
    """Run an installer step, relaying each output line to the feedback and creeping the progress bar
    through `span` (pip does not say how much is left); cancel kills the whole process group."""
    # PIP_ARGS may hold a private index with its password (--index-url https://user:token@host/simple)
    feedback.pushConsoleInfo(redact(" ".join(shlex.quote(part) for part in command)))
    popen_extra: dict[str, Any] = (
        {"start_new_session": True}
        if os.name == "posix"
        else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    )
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=clean_environment(),
            errors="replace",
            **popen_extra,
        )
    except OSError as exc:
        raise RuntimeSetupError(f"cannot start {command[0]} ({exc.strerror}) while {what}: {RERUN}") from exc
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
    reader.start()
    tail: collections.deque[str] = collections.deque(maxlen=60)
    low, high = span
    percent = low
    while True:
        if feedback.isCanceled():
            kill_process_tree(process)
            raise SetupCancelled(f"set-up cancelled while {what}; nothing is broken, {RERUN} to finish it")
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            break
        line = redact(line)  # pip masks an index's password, uv and build back ends may not
        tail.append(line)
        feedback.pushConsoleInfo(line)
        if _PIP_PROGRESS.match(line.strip()):
            # Approaches the step's end, never passes it. No progress text: QGIS would log each line twice.
            percent += (high - percent) * 0.08
            feedback.setProgress(percent)
    reader.join(timeout=1.0)
    returncode = process.wait()
    if returncode != 0:
        raise RuntimeSetupError(installer_failure(list(tail), returncode, what))
    return list(tail)


def _pump(stream_, sink: queue.Queue) -> None:
    for line in iter(stream_.readline, ""):
        sink.put(line.rstrip("\r\n"))
    sink.put(None)


def kill_process_tree(process: subprocess.Popen) -> None:
    if os.name == "posix":
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1.0)
                if signum == signal.SIGTERM:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)  # children pip started
                    return
    else:
        # taskkill /T ends pip and the build processes it started.
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        process.wait(timeout=10)


def installer_failure(tail: list[str], returncode: int, what: str) -> str:
    """One line from pip's last words: its error, a network hint, or the last line it printed."""
    text = [line.strip() for line in tail if line.strip()]
    errors = [line for line in text if line.startswith(("ERROR:", "error:", "×", "pip: error:"))]
    network = any(
        re.search(
            r"(Max retries|NewConnectionError|Temporary failure in name resolution|"
            r"Network is unreachable|ConnectTimeout|ProxyError|SSLError)",
            line,
        )
        for line in text
    )
    cause = errors[-1] if errors else (text[-1] if text else f"exit code {returncode}")
    cause = re.sub(r"^(ERROR|error|pip: error):\s*", "", cause)
    hint = (
        (
            "the package index cannot be reached: check the network, or give a mirror/proxy in PIP_ARGS "
            "(e.g. --index-url URL or --proxy URL)"
        )
        if network
        else "check PIP_ARGS and the network (the whole installer output is in the log)"
    )
    return f"{what} failed: {cause[:300]}; {hint}, {RERUN}"


def verify(python: Path, expected_version: str, feedback: Feedback) -> dict[str, Any]:
    """`python -m clay_core info --json` in the runtime: torch imports, the device is usable and the installed
    clay_core is the plugin's."""
    command = [str(python), "-m", "clay_core", "info", "--json"]
    feedback.pushConsoleInfo(" ".join(command))
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
            env=clean_environment(),
            cwd=str(python.parent),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeSetupError(f"the runtime's Python {python} did not run clay info ({exc}): {RERUN}") from exc
    report = _last_json(done.stdout)
    if done.returncode != 0 or report is None:
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
        raise RuntimeSetupError(
            f"the new runtime does not work (clay info: {last.strip()[:300]}): delete the "
            f"folder {python.parent.parent} and {RERUN}"
        )
    if expected_version and report.get("clay_core") != expected_version:
        raise RuntimeSetupError(
            f"the runtime holds clay_core {report.get('clay_core')}, the plugin {expected_version}: {RERUN}"
        )
    for key in ("clay_core", "torch", "device", "precision"):
        feedback.pushInfo(f"{key}: {report.get(key)}")
    return report


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    return None


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file() and not path.is_symlink())
