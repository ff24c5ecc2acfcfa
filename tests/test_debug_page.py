"""A person's view: headless Chromium opens the debug page and sees the annotated stream and the
tuning plots."""
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from conftest import ROOT, require_program
from daemon_helpers import Daemon, Listener


def chromium_args(chromium, tmp_path, size="900,800", budget_ms=3000):
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={size}", f"--virtual-time-budget={budget_ms}"]


def test_chromium_shows_the_live_stream(tmp_path):
    chromium = require_program("chromium")
    with Daemon("--demo") as daemon:
        listener = Listener(daemon.pub, topics=["person"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 3, 60)
        finally:
            listener.close()
        shot = tmp_path / "page.png"
        subprocess.run(chromium_args(chromium, tmp_path) + [f"--screenshot={shot}", daemon.url + "/"],
                       capture_output=True, timeout=60, cwd=tmp_path)
    page = cv2.imread(str(shot))
    assert page is not None, "no screenshot"
    target_red = (page[..., 2] > 200) & (page[..., 1] < 40) & (page[..., 0] < 40)
    demo_orange = (np.abs(page.astype(int) - (0, 102, 204)).sum(axis=2) < 30)
    figure_head = (np.abs(page.astype(int) - (170, 190, 230)).sum(axis=2) < 30)  # drawn by the synthetic clip
    assert target_red.sum() > 500, "the highlighted target box is not on the page"
    assert figure_head.sum() > 500, "the camera image is not on the page"
    assert demo_orange.sum() > 2000, "the DEMO marker is not shown"


TOKEN = "tuning-page-token-0123"


def metrics(daemon):
    request = urllib.request.Request(daemon.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {key: float(value) for key, value in (line.rsplit(" ", 1) for line in lines if not line.startswith("#"))}


def test_tuning_page_plots_live_numbers(tmp_path):
    """The page opened with ?token= plots the followed person and the daemon's pace; with no page
    open, the daemon serialises no plot points and encodes no frames."""
    chromium = require_program("chromium")
    with Daemon("--demo", env={"ROBOT_DETECTOR_HTTP_TOKEN": TOKEN}) as daemon:
        listener = Listener(daemon.pub, topics=["status"])
        try:
            assert listener.wait_for(lambda l: any(s["frames"] >= 5 for s in l.of("status")), 60)
        finally:
            listener.close()
        idle = metrics(daemon)
        assert idle["robot_detector_frames_total"] >= 5
        assert idle["robot_detector_feed_points_sent_total"] == 0           # nobody looks: no plot work
        assert idle["robot_detector_stream_frames_encoded_total"] == 0
        shot = tmp_path / "tuning-page.png"
        page = subprocess.run(chromium_args(chromium, tmp_path, "1200,1000", 5000) + [
            f"--screenshot={shot}", "--dump-dom", f"{daemon.url}/?token={TOKEN}&target_area=0.12"],
            capture_output=True, text=True, timeout=90, cwd=tmp_path)
        print(f"tuning page screenshot: {shot}")
        watched = metrics(daemon)
        time.sleep(1.5)
        after = metrics(daemon)
    points = dict(re.findall(r'<canvas id="(plot-[a-z]+)"[^>]*data-points="(\d+)"', page.stdout))
    plots = {"plot-offset", "plot-area", "plot-confidence", "plot-latency", "plot-fps"}
    assert set(points) == plots, page.stdout[-2000:]
    assert all(int(n) >= 2 for n in points.values()), points
    assert "followed" in page.stdout and "401" not in page.stdout  # the detections table, reached with the token
    assert watched["robot_detector_feed_points_sent_total"] > 0
    assert watched["robot_detector_stream_frames_encoded_total"] > 0  # the stream in the page, with the token too
    assert after["robot_detector_feed_points_sent_total"] == watched["robot_detector_feed_points_sent_total"]
    image = cv2.imread(str(shot))
    assert image is not None, "no screenshot"
    offset_cyan = np.abs(image.astype(int) - (255, 229, 0)).sum(axis=2) < 40   # the offset_x line (#00e5ff)
    area_yellow = np.abs(image.astype(int) - (0, 214, 255)).sum(axis=2) < 40   # the area line (#ffd600)
    area_yellow[:, :660] = False  # the plots are right of the stream, whose clip has a yellow block
    assert offset_cyan.sum() > 30 and area_yellow.sum() > 30, (offset_cyan.sum(), area_yellow.sum())
    rows = np.nonzero(area_yellow.any(axis=1))[0]
    near_area_plot = image[max(0, rows.min() - 90):rows.max() + 90, 660:]
    white_rows = (near_area_plot.min(axis=2) > 200).sum(axis=1)
    assert (white_rows > 150).any(), "no dashed target-area line across the area plot"


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
