import os
import subprocess
import sys
from pathlib import Path

if "PYTEST_XDIST_WORKER" in os.environ:
    # Two workers on two cores: one BLAS thread each (set before NumPy loads OpenBLAS), not two
    # spinning threads each; the training acceptance test's mAP was measured with one thread.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest

from darknet_files import make_params, person_last_layer, write_weights

ROOT = Path(__file__).resolve().parent.parent
SHARED_MEDIA = ROOT.parent / "shared" / "media"


def pytest_collection_modifyitems(items):
    """Tests marked `long` first: with `-n 2 --dist worksteal` one worker spends the run on them
    while the other takes the rest of the queue."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: others keep their order


def run_cli(*args, timeout=120, **kwargs):
    """Run the installed `robot-detector` console script (as a user would), capturing output."""
    return subprocess.run([str(Path(sys.executable).parent / "robot-detector"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def media():
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"shared media not present at {SHARED_MEDIA} (only in the project's workspace)")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def person_weights(tmp_path_factory):
    """Darknet files (both variants) whose network reports one person at a known place."""
    folder = tmp_path_factory.mktemp("person-weights")
    files = {}
    for name in ("yolo-tiny", "yolov1-tiny"):
        layers = make_params(name, seed=3, last_layer=person_last_layer(name, 0.75, 0.4, 0.2, 0.5))
        files[name] = folder / f"{name}-person.weights"
        write_weights(files[name], layers)
    return files


@pytest.fixture(scope="session")
def test_image(tmp_path_factory):
    """A 640x480 BGR PNG with smooth structure (not just noise)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    image = np.stack([128 + 100 * np.sin(x / 40 + c) * np.cos(y / 30 - c) for c in range(3)], axis=-1)
    image += rng.normal(0, 10, image.shape)
    path = tmp_path_factory.mktemp("images") / "test.png"
    import cv2
    cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8))
    return path


def require_program(name):
    """A system program the test drives for real: CI must have it (.ci/run installs it); a
    user's machine without it skips the test with the reason."""
    import shutil
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path:
        return path
    message = f"{name} is not installed (scripts/install-system-deps installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """(weights, cfg): a small 20-class v1 network reporting one person at (0.75, 0.4, 0.2, 0.5)."""
    from dataset_files import write_small_person_model
    return write_small_person_model(tmp_path_factory.mktemp("small-model"))
