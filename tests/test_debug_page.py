"""A person's view: headless Chromium opens the debug page and sees the annotated stream."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from conftest import ROOT, require_program
from daemon_helpers import Daemon, Listener


def test_chromium_shows_the_live_stream(tmp_path):
    chromium = require_program("chromium")
    with Daemon("--demo") as daemon:
        listener = Listener(daemon.pub, topics=["person"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 3, 60)
        finally:
            listener.close()
        shot = tmp_path / "page.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,800",
                        "--virtual-time-budget=3000", f"--screenshot={shot}", daemon.url + "/"],
                       capture_output=True, timeout=60, cwd=tmp_path)
    page = cv2.imread(str(shot))
    assert page is not None, "no screenshot"
    target_red = (page[..., 2] > 200) & (page[..., 1] < 40) & (page[..., 0] < 40)
    demo_orange = (np.abs(page.astype(int) - (0, 102, 204)).sum(axis=2) < 30)
    figure_head = (np.abs(page.astype(int) - (170, 190, 230)).sum(axis=2) < 30)  # drawn by the synthetic clip
    assert target_red.sum() > 500, "the highlighted target box is not on the page"
    assert figure_head.sum() > 500, "the camera image is not on the page"
    assert demo_orange.sum() > 2000, "the DEMO marker is not shown"


def test_systemd_units_verify(tmp_path):
    analyze = require_program("systemd-analyze")
    # The units name the install venv /opt/robot-detector; point them at this test's environment so
    # that systemd-analyze can check the executables exist, and verify everything else as shipped.
    for unit in sorted((ROOT / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/robot-detector/bin", str(Path(sys.executable).parent))
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(p) for p in tmp_path.glob("*.service"))
    assert units
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
