"""Peak memory of the daemon: the weights are held once, and onnxruntime's prepacked copy of the
matrices beside them by default (speed first); `low_memory` keeps the smaller footprint."""
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from detector.model.engines import create_engine
from detector.model.weights_store import load_model

LIMIT_MB = {"yolo-tiny": 420, "yolov1-tiny": 360}
LOW_MEMORY_LIMIT_MB = {"yolo-tiny": 400, "yolov1-tiny": 300}  # import baseline plus 1.5x the file


def peak_rss_mb(pid):
    """The kernel's high-water mark of the process's resident set since its exec. (getrusage of
    children is no use here: it would count the test process's own pages at fork time.)"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@pytest.mark.parametrize("low_memory", [False, True], ids=["default", "low_memory"])
@pytest.mark.parametrize("name", ["yolo-tiny", "yolov1-tiny"])
def test_daemon_peak_rss(person_weights, name, low_memory):
    """`run` on a real-size weights file: read the peak once frames flow, then stop it."""
    script = Path(sys.executable).parent / "robot-detector"
    process = subprocess.Popen([str(script), "run", "--weights", str(person_weights[name]), "--source", "synthetic",
                                "--no-http", "--pub", "tcp://127.0.0.1:0", "--log-level", "info",
                                *(["--low-memory"] if low_memory else [])],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if "starting -> running" in line:
                break
        time.sleep(1.0)  # a few more frames through every stage
        assert process.poll() is None, "".join(output)
        peak_mb = peak_rss_mb(process.pid)
        process.send_signal(signal.SIGTERM)
        output += process.stdout.readlines()
        assert process.wait(timeout=10) == 0, "".join(output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert any("engine onnxruntime (fp32)" in line for line in output), "".join(output)
    limit_mb = (LOW_MEMORY_LIMIT_MB if low_memory else LIMIT_MB)[name]
    print(f"{name} low_memory={low_memory}: peak RSS {peak_mb:.0f} MB (limit {limit_mb} MB)")
    assert peak_mb <= limit_mb, f"{name} (low_memory {low_memory}): peak RSS {peak_mb:.0f} MB > {limit_mb} MB"


def test_engine_builds_when_the_file_is_gone_after_loading(person_weights, tmp_path, caplog):
    """onnxruntime reads the parameters from the file; when it cannot (the file was replaced or
    removed after loading, or an onnxruntime without that option) the engine embeds them instead."""
    blob = np.random.default_rng(0).random((1, 3, 448, 448), dtype=np.float32)
    expected = create_engine(load_model(person_weights["yolov1-tiny"]), "onnxruntime").infer(blob)
    model = load_model(shutil.copy(person_weights["yolov1-tiny"], tmp_path / "gone.weights"))
    (tmp_path / "gone.weights").unlink()  # the mapping keeps the old contents readable
    found = create_engine(model, "onnxruntime").infer(blob)
    assert "cannot read the parameters" in caplog.text
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
