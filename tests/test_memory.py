"""Peak memory of the daemon: the weights are held once (import baseline plus 1.5x the file)."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LIMIT_MB = {"yolo-tiny": 400, "yolov1-tiny": 300}


def peak_rss_mb(pid):
    """The kernel's high-water mark of the process's resident set since its exec. (getrusage of
    children is no use here: it would count the test process's own pages at fork time.)"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@pytest.mark.parametrize("name", ["yolo-tiny", "yolov1-tiny"])
def test_daemon_peak_rss(person_weights, name):
    """`run` on a real-size weights file: read the peak once frames flow, then stop it."""
    script = Path(sys.executable).parent / "robot-detector"
    process = subprocess.Popen([str(script), "run", "--weights", str(person_weights[name]), "--source", "synthetic",
                                "--no-http", "--pub", "tcp://127.0.0.1:0", "--log-level", "info"],
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
    assert peak_mb <= LIMIT_MB[name], f"{name}: peak RSS {peak_mb:.0f} MB > {LIMIT_MB[name]} MB"
