"""clay_qgis.runtime without a full install: base-Python discovery on fake QGIS bundles, the torch choice with a
fake nvidia-smi, one-line failures from real processes, cancel, and the stamp that makes re-runs fast."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from clay_qgis import runtime


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


class Recorder(runtime.Feedback):
    def __init__(self, cancel_after: str | None = None) -> None:
        self.lines: list[str] = []
        self.progress: list[float] = []
        self.cancel_after = cancel_after
        self.cancelled = False

    def pushInfo(self, text):  # noqa: N802
        self.lines.append(text)

    def pushConsoleInfo(self, text):  # noqa: N802
        self.lines.append(text)
        if self.cancel_after and self.cancel_after in text:
            self.cancelled = True

    def setProgress(self, percent):  # noqa: N802
        self.progress.append(percent)

    def setProgressText(self, text):  # noqa: N802
        self.lines.append(text)

    def isCanceled(self):  # noqa: N802
        return self.cancelled


# -- base Python ---------------------------------------------------------------------------------


def test_windows_qgis_bundle_uses_its_own_python_never_qgis_exe(tmp_path: Path):
    root = tmp_path / "QGIS 3.40"
    qgis_exe = executable(root / "bin" / "qgis-bin.exe")
    python = executable(root / "apps" / "Python312" / "python.exe")
    candidates = runtime.python_candidates("win32", str(qgis_exe), str(root / "apps" / "Python312"), path="")
    assert candidates[0] == str(python)
    assert str(qgis_exe) not in candidates


def test_osgeo4w_layout_found_from_the_executable_alone(tmp_path: Path):
    """OSGeo4W: qgis-ltr-bin.exe in bin/, Python under apps/Python3xx (the newest one first)."""
    root = tmp_path / "OSGeo4W"
    qgis_exe = executable(root / "bin" / "qgis-ltr-bin.exe")
    executable(root / "apps" / "Python39" / "python.exe")
    newest = executable(root / "apps" / "Python312" / "python.exe")
    candidates = runtime.python_candidates("win32", str(qgis_exe), str(tmp_path / "nowhere"), path="")
    assert candidates[0] == str(newest)


def test_macos_app_bundle_uses_the_bundled_python(tmp_path: Path):
    macos = tmp_path / "QGIS-LTR.app" / "Contents" / "MacOS"
    qgis_exe = executable(macos / "QGIS")
    python = executable(macos / "bin" / "python3")
    candidates = runtime.python_candidates("darwin", str(qgis_exe), str(tmp_path / "Frameworks"), path="")
    assert candidates[0] == str(python)
    assert str(qgis_exe) not in candidates


def test_linux_prefers_the_system_python3():
    candidates = runtime.python_candidates("linux", "/usr/bin/qgis", "/usr", path="")
    assert candidates[0] == "/usr/bin/python3"


def test_the_real_system_python_has_venv():
    probed = runtime.probe_python("/usr/bin/python3")
    assert probed is not None and probed.has_venv and probed.version >= (3, 11)
    base = runtime.find_base_python("linux", "/usr/bin/qgis", "/usr", path="")
    assert base.python == "/usr/bin/python3" and base.uv is None


def fake_python(folder: Path, version: str = "3,11,2", has_venv: bool = False) -> Path:
    """A 'python' that answers the probe like Debian's python3 without python3-venv."""
    answer = f"[[{version}], {'true' if has_venv else 'false'}]"
    return executable(folder / "python3", f"#!/bin/sh\necho '{answer}'\n")


def test_no_venv_module_is_one_line_naming_the_debian_package(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CLAY_BASE_PYTHON", str(fake_python(tmp_path / "bin")))
    with pytest.raises(runtime.RuntimeSetupError) as failure:
        runtime.find_base_python("linux", "/usr/bin/qgis", "/usr", path=str(tmp_path / "bin"))
    message = str(failure.value)
    assert "\n" not in message
    assert "has no venv module" in message
    if Path("/etc/debian_version").exists():
        assert "sudo apt install python3-venv" in message
    assert "Set up Clay runtime again" in message


def test_uv_makes_the_environment_when_python_lacks_venv(tmp_path: Path, monkeypatch):
    python = fake_python(tmp_path / "bin")
    uv = executable(tmp_path / "bin" / "uv")
    monkeypatch.setenv("CLAY_BASE_PYTHON", str(python))
    base = runtime.find_base_python("linux", "/usr/bin/qgis", "/usr", path=str(tmp_path / "bin"))
    assert base == runtime.BasePython(str(python), str(uv), "3.11.2")


def test_too_old_python_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CLAY_BASE_PYTHON", str(fake_python(tmp_path / "bin", "3,9,2", has_venv=True)))
    with pytest.raises(runtime.RuntimeSetupError, match=r"no Python 3\.11 or newer .*3\.9\.2"):
        runtime.find_base_python("linux", "/usr/bin/qgis", "/usr", path=str(tmp_path / "bin"))


# -- torch choice --------------------------------------------------------------------------------


def fake_nvidia_smi(folder: Path, cuda: str) -> str:
    executable(
        folder / "nvidia-smi",
        f"#!/bin/sh\necho '| NVIDIA-SMI 550.54.14   Driver Version: 550.54.14   CUDA Version: {cuda}     |'\n",
    )
    return str(folder)


def test_no_gpu_on_linux_takes_the_cpu_build_from_the_pytorch_index(tmp_path: Path):
    choice = runtime.choose_torch("", "linux", path=str(tmp_path))
    assert choice.pip_args == ("--index-url", "https://download.pytorch.org/whl/cpu")
    assert "no NVIDIA GPU" in choice.reason


def test_no_gpu_on_windows_and_macos_takes_pypi(tmp_path: Path):
    for platform in ("win32", "darwin"):
        assert runtime.choose_torch("", platform, path=str(tmp_path)).pip_args == ()


@pytest.mark.parametrize(
    ("cuda", "platform", "pip_args"),
    [
        ("12.8", "linux", ()),  # PyPI's Linux torch is a CUDA 12.8 build
        ("13.0", "linux", ()),
        ("12.4", "linux", ("--index-url", "https://download.pytorch.org/whl/cu118")),
        ("12.6", "linux", ("--index-url", "https://download.pytorch.org/whl/cu126")),
        ("12.8", "win32", ("--index-url", "https://download.pytorch.org/whl/cu128")),  # PyPI's Windows torch is CPU
        ("11.8", "win32", ("--index-url", "https://download.pytorch.org/whl/cu118")),
    ],
)
def test_gpu_driver_picks_a_cuda_build_it_can_run(tmp_path: Path, cuda, platform, pip_args):
    choice = runtime.choose_torch("", platform, path=fake_nvidia_smi(tmp_path, cuda))
    assert choice.pip_args == pip_args
    assert f"CUDA {cuda}" in choice.reason
    if platform == "win32":
        assert "PyPI's Windows torch is CPU-only" in choice.reason


def test_a_driver_too_old_for_any_cuda_build_gets_the_cpu_build(tmp_path: Path):
    choice = runtime.choose_torch("", "linux", path=fake_nvidia_smi(tmp_path, "11.4"))
    assert choice.pip_args[-1].endswith("/cpu") and "older than any torch CUDA build" in choice.reason


def test_an_explicit_requirement_or_a_user_index_wins(tmp_path: Path):
    assert runtime.choose_torch(" torch==2.13.0 ", "linux", path=str(tmp_path)) == runtime.TorchChoice(
        "torch==2.13.0", (), "as requested"
    )
    mirror = runtime.choose_torch(
        "", "linux", path=fake_nvidia_smi(tmp_path, "12.4"), user_pip_args=["--index-url=https://mirror.example/simple"]
    )
    assert mirror.pip_args == ()


# -- failures, cancel, stamp -----------------------------------------------------------------------


def test_pip_errors_become_one_line(tmp_path: Path):
    with pytest.raises(runtime.RuntimeSetupError) as failure:
        runtime.stream(
            [sys.executable, "-m", "pip", "install", "--no-such-option", "x"],
            Recorder(),
            (0, 10),
            "installing packages",
        )
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("installing packages failed: no such option: --no-such-option; check PIP_ARGS")


def test_network_failures_say_how_to_use_a_mirror():
    tail = [
        "WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')",
        "ERROR: Could not find a version that satisfies the requirement torch>=2.4 (from versions: none)",
    ]
    message = runtime.installer_failure(tail, 1, "installing packages")
    assert "Could not find a version that satisfies the requirement torch>=2.4" in message
    assert "--index-url URL or --proxy URL" in message


def test_cancel_kills_the_installer_and_its_children_within_a_second(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen(['sleep', '60']); open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('child ' + 'is up', flush=True); time.sleep(60)\n"
    )
    feedback = Recorder(cancel_after="child is up")
    began = time.monotonic()
    with pytest.raises(runtime.SetupCancelled, match="cancelled"):
        runtime.stream([sys.executable, "-c", code], feedback, (0, 10), "installing packages")
    assert time.monotonic() - began < 5
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the installer's child process survived the cancel"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its dead parent's reaper) is gone for our purposes
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_a_folder_holding_other_files_is_refused(tmp_path: Path):
    (tmp_path / "my-thesis.docx").write_text("precious")
    with pytest.raises(runtime.RuntimeSetupError, match="already holds other files: choose an empty or new folder"):
        runtime.setup_runtime(tmp_path, "torch==2.13.0", "", Recorder())
    assert (tmp_path / "my-thesis.docx").read_text() == "precious"


def test_the_checkout_is_the_package_when_no_wheel_is_bundled(tmp_path: Path):
    package = runtime.bundled_clay_core()
    checkout = Path(runtime.__file__).resolve().parent.parent
    assert package.target == str(checkout)
    import clay_core

    assert package.version == clay_core.__version__
    with pytest.raises(runtime.RuntimeSetupError, match="reinstall the plugin from its release zip"):
        runtime.bundled_clay_core(tmp_path / "clay_qgis")


def test_a_bundled_wheel_is_preferred_and_its_hash_tracks_upgrades(tmp_path: Path):
    plugin = tmp_path / "clay_qgis"
    wheel = plugin / "wheels" / "clay_qgis-0.2.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"one")
    first = runtime.bundled_clay_core(plugin)
    wheel.write_bytes(b"two")
    second = runtime.bundled_clay_core(plugin)
    assert first.target == str(wheel) and first.version == "0.2.0"
    assert first.sha256 != second.sha256


def test_installer_options_are_split_like_a_shell_and_keep_windows_paths():
    assert runtime.split_pip_args("--index-url https://m.example/simple --proxy 'http://p:3128'", posix=True) == [
        "--index-url",
        "https://m.example/simple",
        "--proxy",
        "http://p:3128",
    ]
    assert runtime.split_pip_args('--no-index --find-links "C:\\my wheels" -f D:\\wheels', posix=False) == [
        "--no-index",
        "--find-links",
        "C:\\my wheels",
        "-f",
        "D:\\wheels",
    ]
    with pytest.raises(ValueError):
        runtime.split_pip_args("--proxy 'unbalanced", posix=True)


def _stub_runtime_folder(folder: Path) -> Path:
    """A runtime folder whose bin/python is the test's own Python (it has torch and clay_core): verify runs real."""
    folder.mkdir()
    (folder / "pyvenv.cfg").write_text("")
    return executable(runtime.venv_python(folder), f'#!/bin/sh\nexec {sys.executable} "$@"\n')


def test_the_stamp_keeps_no_index_password_and_still_tells_a_change_of_pip_args(tmp_path: Path):
    """PIP_ARGS with a private index's password: the stamp holds it neither plain nor as a bare hash; the same
    options again only verify, other options install again (here pip refuses the unknown option: one line)."""
    secret_args = ["--index-url", "https://bob:hunter2pw@pypi.example/simple", "--no-such-option-x"]
    folder = tmp_path / "runtime"
    _stub_runtime_folder(folder)
    base = runtime.BasePython(sys.executable, None, "3.11")
    package = runtime.ClayCorePackage(str(tmp_path / "none.whl"), "1" * 64, "")
    plan = runtime.SetupPlan(folder, base, runtime.TorchChoice("torch==2.13.0"), package, secret_args)
    runtime.write_stamp(folder, plan.stamp())
    text = (folder / runtime.STAMP_NAME).read_text()
    assert "hunter2pw" not in text and "pypi.example/simple" in text
    assert runtime._sha256(json.dumps(secret_args).encode()) not in text  # a plain hash would be guessable

    again = runtime.setup_runtime(folder, "", secret_args, Recorder(), base=base, clay_core=package)
    assert again.steps == ["verify"] and not again.installed
    with pytest.raises(runtime.RuntimeSetupError, match="no such option: --no-such-option-y"):
        runtime.setup_runtime(
            folder, "", [*secret_args[:2], "--no-such-option-y"], Recorder(), base=base, clay_core=package
        )
    assert (folder / runtime.STAMP_NAME).read_text() == text  # a failed install leaves the stamp as it was


def test_a_stamp_from_before_the_hash_still_knows_its_pip_args():
    """Stamps written by the previous release hold PIP_ARGS plainly: compared as they are, so the upgrade that
    installs the new clay_core does not download torch again (the install then writes the hashed stamp)."""
    legacy = {"pip_args": ["--index-url", "https://mirror.example/simple"], "torch": "torch==2.13.0"}
    assert runtime.same_pip_args(legacy, ["--index-url", "https://mirror.example/simple"])
    assert not runtime.same_pip_args(legacy, ["--index-url", "https://other.example/simple"])
    assert runtime.same_pip_args({"torch": "torch==2.13.0"}, [])  # no options then, none now
    assert not runtime.same_pip_args({"pip_args": ["--x"], "pip_args_salt": "zz"}, ["--x"])  # half a new stamp
