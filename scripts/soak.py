"""Soak test: one daemon under churn for SECONDS; fails when it leaks or slows down.

Against one `robot-detector run` (an MJPEG camera over HTTP served by this script, planted-person
weights, the debug stream on): ZeroMQ subscribers that come and go (half of them never read), MJPEG
viewers that drop in the middle of a frame, status/feed/metrics/page polls, idle half-requests, and
a camera that goes away for 3 s every 20 s and returns. RSS, open fds and threads are read from
/proc at the start, after the warm-up and at the end (the last two with the churn paused and the
connections drained, so both are quiet); the run fails when, from warm-up to end, RSS grows more
than 15 MB, fds more than 5 or threads more than 3, when detection runs below --min-fps (median of
the 5 s windows without a camera outage), when the log has a traceback or an error, when the
daemon does not recover from an outage, or when SIGTERM does not end it with exit 0.

Run as `scripts/soak [SECONDS]` (default 300).
"""
from __future__ import annotations

import argparse
import bisect
import http.client
import http.server
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ["PYTHONPATH"] = str(ROOT)  # the daemon runs this checkout's code

import zmq  # noqa: E402

from daemon_helpers import Daemon  # noqa: E402
from darknet_files import make_params, person_last_layer, write_weights  # noqa: E402

LIMITS = {"rss_mib": 15, "fds": 5, "threads": 3}
WINDOW_S = 5.0
OUTAGE_EVERY_S = 20.0
OUTAGE_S = 3.0


def proc_figures(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return {"rss_mib": int(status["VmRSS"].split()[0]) / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(status["Threads"])}


class Camera:
    """An IP camera stand-in: an MJPEG stream over HTTP at `fps`, which can go away for a while
    (its streams end and new connections get 503), like a camera on a flaky link."""

    def __init__(self, fps: float = 30.0, frames: int = 60, size=(640, 480)):
        import cv2
        import numpy as np
        self.period_s = 1.0 / fps
        self.away = threading.Event()
        self.jpegs = []
        for i in range(frames):
            image = np.full((size[1], size[0], 3), 60, np.uint8)
            x = (i * 12) % (size[0] - 80)
            image[120:360, x:x + 80] = (0, 180, 255)
            self.jpegs.append(cv2.imencode(".jpg", image)[1].tobytes())
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                if camera.away.is_set():
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                next_due, i = time.monotonic(), 0
                try:
                    while not camera.away.is_set():
                        jpeg = camera.jpegs[i % len(camera.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                        i += 1
                        next_due += camera.period_s
                        time.sleep(max(0.0, next_due - time.monotonic()))
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Soak:
    def __init__(self, daemon: Daemon, camera: Camera, outage_every_s: float = OUTAGE_EVERY_S, seed: int = 1):
        self.daemon = daemon
        self.outage_every_s = outage_every_s
        self.camera = camera
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.running = threading.Event()  # cleared: churn pauses (for quiet measurements)
        self.running.set()
        self.outages: list = []           # (t_start, t_end) monotonic, source file away
        self.frame_times: list = []       # monotonic arrival of each `person` message
        self.counts = dict.fromkeys(["subscribers", "viewers_dropped", "polls", "half_requests", "outages"], 0)
        self.errors: list = []

    def _loop(self, step):
        while not self.stop.is_set():
            if not self.running.wait(0.2):
                continue
            try:
                step()
            except Exception as error:  # the soak's own clients must not die quietly either
                self.errors.append(f"{step.__name__}: {type(error).__name__}: {error}")
                time.sleep(0.5)

    def subscriber(self):
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 1)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.daemon.pub)
        t_end = time.monotonic() + self.random.uniform(0.2, 2.0)
        reads = self.random.random() < 0.5
        while time.monotonic() < t_end and not self.stop.is_set():
            if reads and sub.poll(100):
                sub.recv()
            elif not reads:
                time.sleep(0.1)
        sub.close()
        self.counts["subscribers"] += 1

    def viewer(self):
        with socket.create_connection(("127.0.0.1", self.daemon.http_port), timeout=5) as s:
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            wanted, got = self.random.randint(1, 300_000), 0
            while got < wanted:
                chunk = s.recv(min(65536, wanted - got))
                if not chunk:
                    break
                got += len(chunk)
            if self.random.random() < 0.5:  # an abrupt end: RST instead of FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.counts["viewers_dropped"] += 1

    def poller(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.daemon.http_port, timeout=5)
        for path in ("/status.json", "/healthz", "/metrics", "/feed.json?since=0", "/snapshot.jpg", "/"):
            connection.request("GET", path)
            connection.getresponse().read()
            self.counts["polls"] += 1
        connection.close()
        time.sleep(self.random.uniform(0.05, 0.3))

    def half_request(self):
        with socket.create_connection(("127.0.0.1", self.daemon.http_port), timeout=30) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")  # ...and nothing more: the server must close it
            s.recv(1024)
        self.counts["half_requests"] += 1

    def frames(self):
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"person ")
        sub.connect(self.daemon.pub)
        while not self.stop.is_set():
            if sub.poll(200):
                sub.recv()
                self.frame_times.append(time.monotonic())
        sub.close()

    def outage(self):
        if self.stop.wait(self.outage_every_s - OUTAGE_S) or not self.running.is_set():
            return
        t0 = time.monotonic()
        self.camera.away.set()
        self.stop.wait(OUTAGE_S)
        self.camera.away.clear()
        self.outages.append((t0, time.monotonic()))
        self.counts["outages"] += 1

    def start(self):
        steps = [self.subscriber] * 3 + [self.viewer] * 2 + [self.poller, self.half_request, self.outage]
        self.threads += [threading.Thread(target=self._loop, args=(step,), daemon=True) for step in steps]
        for thread in self.threads[1:]:
            thread.start()

    def count_frames(self):
        self.threads = [threading.Thread(target=self.frames, daemon=True)]
        self.threads[0].start()

    def quiet_figures(self) -> dict:
        """Pause the churn, let the daemon close what it holds, read /proc, resume."""
        self.running.clear()
        time.sleep(1.0)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # half-requests are closed after 5 s, viewers at once
            if self.open_connections() <= 1:  # the metrics request itself
                break
            time.sleep(0.5)
        time.sleep(0.5)
        figures = proc_figures(self.daemon.process.pid)
        self.running.set()
        return figures

    def open_connections(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.daemon.http_port, timeout=5)
        connection.request("GET", "/metrics")
        body = connection.getresponse().read().decode()
        connection.close()
        return int(float(next(line.split()[1] for line in body.splitlines()
                              if line.startswith("robot_detector_http_connections "))))

    def fps_windows(self, t_from: float, t_to: float) -> list:
        """Frames per second in the WINDOW_S windows (starting every second) that no outage (plus
        its recovery) touches."""
        rates = []
        t = t_from
        times = list(self.frame_times)  # appended in time order
        while t + WINDOW_S <= t_to + 1e-6:
            if not any(start - 1 < t + WINDOW_S and t < end + 3 for start, end in self.outages):
                rates.append((bisect.bisect_left(times, t + WINDOW_S) - bisect.bisect_left(times, t)) / WINDOW_S)
            t += 1.0
        return rates


def healthy(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", nargs="?", type=float, default=300.0)
    parser.add_argument("--warmup", type=float, help="seconds before the baseline (default: a third, at most 120)")
    parser.add_argument("--min-fps", type=float, default=25.0)
    parser.add_argument("--model", default="yolov1-tiny", choices=["yolov1-tiny", "yolo-tiny"])
    args = parser.parse_args(argv)
    warmup_s = args.warmup if args.warmup is not None else min(120.0, args.seconds / 3)
    baseline_s = WINDOW_S if args.seconds < 120 else 2 * WINDOW_S  # detection alone, before the churn

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    camera = Camera()
    weights = work / "person.weights"
    write_weights(weights, make_params(args.model, 5, person_last_layer(args.model, 0.55, 0.5, 0.25, 0.6)))
    daemon = Daemon("--source", camera.url, "--weights", weights, log_path=work / "daemon.log")
    print(f"soak: {args.seconds:.0f} s ({warmup_s:.0f} s warm-up), model {args.model}, log {work / 'daemon.log'}",
          flush=True)
    daemon.start()
    soak = Soak(daemon, camera, min(OUTAGE_EVERY_S, max(8.0, args.seconds / 2)))
    failures = []
    try:
        deadline = time.monotonic() + 120
        while not healthy(daemon.http_port):
            if daemon.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"soak: the daemon did not start:\n{(work / 'daemon.log').read_text()}")
            time.sleep(0.5)
        figures = {"start": proc_figures(daemon.process.pid)}
        soak.count_frames()  # first alone: the rate this machine gives without churn, for comparison
        t_baseline = time.monotonic()
        soak.stop.wait(baseline_s)
        t_start = time.monotonic()
        soak.start()
        soak.stop.wait(warmup_s)
        figures["warm-up"] = soak.quiet_figures()
        t_warm = time.monotonic()
        soak.stop.wait(max(0.0, args.seconds - warmup_s))
        t_end = time.monotonic()
        figures["end"] = soak.quiet_figures()
        soak.stop.set()
        for thread in soak.threads:
            thread.join(10)
    finally:
        soak.stop.set()
        daemon.process.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(10)
        except Exception:
            daemon.process.kill()
            code = daemon.wait(10)
    log = daemon.stderr

    print(f"{'':>8} {'RSS MiB':>8} {'fds':>5} {'threads':>8}")
    for name, f in figures.items():
        print(f"{name:>8} {f['rss_mib']:8.1f} {f['fds']:5d} {f['threads']:8d}")
    growth = {key: figures["end"][key] - figures["warm-up"][key] for key in LIMITS}
    print("growth after warm-up: " + ", ".join(f"{key} {value:+.1f}" for key, value in growth.items()))
    failures += [f"{key} grew by {value:.1f} (limit {LIMITS[key]})"
                 for key, value in growth.items() if value > LIMITS[key]]
    baseline = soak.fps_windows(t_baseline, t_start)
    if baseline:
        print(f"detection before the churn: {sum(baseline) / len(baseline):.1f} fps over {baseline_s:.0f} s")
    rates = sorted(soak.fps_windows(t_start, t_end))
    if rates:
        median = rates[len(rates) // 2]
        print(f"detection: median {median:.1f} fps, lowest {rates[0]:.1f} fps over {len(rates)} windows of "
              f"{WINDOW_S:.0f} s (one a second) without a source outage")
        if median < args.min_fps:
            failures.append(f"detection ran at {median:.1f} fps (median), below {args.min_fps}")
    else:
        failures.append("no detection window without an outage was measured")
    print("churn: " + ", ".join(f"{value} {key}" for key, value in soak.counts.items()) +
          f"; the soak's clients reported {len(soak.errors)} error(s)")
    for error in sorted(set(soak.errors))[:10]:
        print(f"  client error: {error}")
    bad_lines = [line for line in log.splitlines() if "Traceback" in line or " ERROR " in line]
    if bad_lines:
        failures.append(f"{len(bad_lines)} traceback/error line(s) in the log, first: {bad_lines[0]}")
    if code != 0:
        failures.append(f"SIGTERM ended the daemon with exit code {code}")
    if soak.counts["outages"] and "camera_lost -> running" not in log:
        failures.append("the source came back but the daemon did not recover")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("soak: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
