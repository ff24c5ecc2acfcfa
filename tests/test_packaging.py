"""A wheel of the project works when installed somewhere else and run from another directory."""
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT
from daemon_helpers import free_port

SHIPPED_CFGS = {"detector/model/cfgs/yolo-tiny.cfg", "detector/model/cfgs/yolov1-tiny.cfg"}
# Without the checkout on the path (tests run with PYTHONPATH pointing at it): pip would take its
# egg-info for an installed robot-detector, and the commands would import the checkout's code.
CLEAN_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A wheel built from a copy of the sources, installed into a fresh venv: (wheel, venv bin)."""
    work = tmp_path_factory.mktemp("packaging")
    # Build from a copy: pip builds in the source tree, and its build/ and egg-info must not land
    # in the checkout. No build isolation: the test's environment already has setuptools<81 and
    # an isolated build would need the network.
    source = work / "source"
    for name in ("detector", "robot_client"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work / "dist", source],
                   check=True, capture_output=True, timeout=120, env=CLEAN_ENV)
    [wheel] = (work / "dist").glob("robot_detector-*.whl")

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    # --no-deps, and the dependencies come from this test's own environment through a .pth file:
    # downloading and building them (about 100 MB, chainer from source) would make this test take
    # minutes and need the network; CI's scripts/setup already installs them from pyproject.toml.
    # What this test checks is the wheel itself: its files, its entry points, no checkout needed.
    subprocess.run([*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "-q", wheel],
                   check=True, capture_output=True, timeout=120, env=CLEAN_ENV)
    [venv_site] = (venv / "lib").glob("python3.*/site-packages")
    (venv_site / "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return wheel, venv / "bin"


def run_installed(bin_dir, cwd, *args):
    return subprocess.run([str(bin_dir / args[0]), *map(str, args[1:])], cwd=cwd, env=CLEAN_ENV,
                          capture_output=True, text=True, timeout=120)


def test_wheel_holds_the_cfgs_and_no_tests(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert SHIPPED_CFGS <= names
    assert "robot_client/client.py" in names and "detector/daemon/service.py" in names
    assert {"detector/capture.py", "detector/sim/follow.py", "detector/sim/plot.py"} <= names  # subpackages ship
    assert not any(name.startswith(("tests/", "weights/")) for name in names)


def test_installed_commands_run_from_another_directory(installed, person_weights, tmp_path):
    _, bin_dir = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run_installed(bin_dir, elsewhere, "python", "-c", "import detector; print(detector.__file__)")
    assert where.returncode == 0 and where.stdout.startswith(str(bin_dir.parent)), where.stdout + where.stderr

    demo = run_installed(bin_dir, elsewhere, "robot-detector", "run", "--demo", "--max-frames", "3", "--no-http",
                         "--pub", f"tcp://127.0.0.1:{free_port()}")
    assert demo.returncode == 0, demo.stderr
    assert "stopped after 3 frames" in demo.stderr

    bench = run_installed(bin_dir, elsewhere, "robot-detector", "bench", "--model", "yolov1-tiny",
                          "--engine", "onnxruntime", "--frames", "3", "--json")
    assert bench.returncode == 0, bench.stderr
    report = json.loads(bench.stdout)
    assert report["engine"] == "onnxruntime" and report["frames"] == 3

    verify = run_installed(bin_dir, elsewhere, "robot-detector", "weights", "verify", "--json",
                           person_weights["yolov1-tiny"])
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["model"] == "yolov1-tiny"

    client = run_installed(bin_dir, elsewhere, "robot-client", "--help")
    assert client.returncode == 0 and "--dry-run" in client.stdout
    assert list(elsewhere.iterdir()) == []
