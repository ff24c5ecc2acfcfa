"""The debug server under abuse, with plain sockets on loopback: half-requests, abrupt disconnects,
too many connections, foreign Host names, missing tokens, a frame that cannot be drawn, and the
CLI's stdout going away."""
import json
import logging
import math
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

from conftest import run_cli
from daemon_helpers import SCRIPT, Daemon, Listener
from detector.daemon.tracker import LOST, TrackerUpdate
from detector.daemon.webserver import MAX_CONNECTIONS, REQUEST_TIMEOUT_S
from detector.model.decode import Detection

NOBODY = TrackerUpdate((), LOST, ())  # a frame in which nobody is tracked

TOKEN = "0123456789abcdef-soak"


def connect(port, request=b"", timeout=20):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if request:
        s.sendall(request)
    return s


def get(port, path, headers=(), timeout=10):
    """(status, body) of one GET over a raw socket (so that any Host header can be sent)."""
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "Connection: close\r\n\r\n"
    with connect(port, head.encode(), timeout) as s:
        data = b""
        while (chunk := s.recv(65536)):
            data += chunk
            if path.startswith("/stream.mjpg") and b"\r\n\r\n" in data:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def reset(s):
    """Close with RST, as a crashed or killed client does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def metric(port, name):
    status, body = get(port, "/metrics", [("Host", "127.0.0.1")])
    return float(next(line.split()[1] for line in body.decode().splitlines() if line.startswith(name + " ")))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    log = tmp_path_factory.mktemp("daemon") / "daemon.log"
    with Daemon("--demo", "--log-level", "debug", log_path=log) as daemon:
        listener = Listener(daemon.pub, topics=["person"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 3, 60), log.read_text()
        finally:
            listener.close()
        yield daemon


def closed_within(s, t0):
    """Seconds from `t0` until the server closed `s` (EOF or reset)."""
    try:
        while s.recv(1024):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - t0


def test_idle_and_trickling_half_requests_are_closed(daemon):
    t0 = time.monotonic()
    idle = [connect(daemon.http_port, b"GET / HTTP/1.1\r\n") for _ in range(20)]
    trickler = connect(daemon.http_port, b"GET / HTTP/1.1\r\n")
    trickled = []

    def trickle():  # a header line a second: each read is quick, the whole head never completes
        try:
            for i in range(30):
                trickler.sendall(b"X-Slow-%d: 1\r\n" % i)
                time.sleep(1.0)
        except OSError:
            pass
        trickled.append(closed_within(trickler, t0))

    thread = threading.Thread(target=trickle)
    thread.start()
    closed_after = [closed_within(s, t0) for s in idle]
    thread.join(20)
    for s in idle + [trickler]:
        s.close()
    assert REQUEST_TIMEOUT_S - 0.5 < min(closed_after) and max(closed_after) < 15, closed_after
    assert trickled and trickled[0] < 15, trickled
    assert metric(daemon.http_port, "robot_detector_http_request_timeouts_total") >= 21


def test_300_abrupt_disconnects_leave_no_traceback(daemon):
    port = daemon.http_port
    for batch in range(10):  # 30 at a time stays under the connection cap
        sockets = []
        for i in range(30):
            kind = (batch * 30 + i) % 3
            if kind == 0:    # mid-request
                sockets.append(connect(port, b"GET /status.json HTTP/1.1\r\nHost: 127.0."))
            elif kind == 1:  # request sent, gone before the answer is read
                sockets.append(connect(port, b"GET /snapshot.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
            else:            # mid-stream, after part of a frame
                s = connect(port, b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                s.recv(2000)
                sockets.append(s)
        for s in sockets:
            reset(s)
    time.sleep(1.0)
    assert get(port, "/healthz")[0] == 200
    log = daemon.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert "connection ended" in log  # the disconnects are there, as debug lines


def test_connection_cap_answers_503_and_spares_existing_viewers(daemon):
    port = daemon.http_port
    viewer = connect(port, b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"multipart/x-mixed-replace" in viewer.recv(4096)
    rejected_before = metric(port, "robot_detector_http_rejected_total")
    time.sleep(0.3)  # the metrics connection is gone
    held = [connect(port, b"GET / HTTP/1.1\r\n") for _ in range(MAX_CONNECTIONS - 1)]
    time.sleep(0.5)
    try:
        extra = connect(port, b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = extra.recv(4096)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        received = 0
        while received < 100_000:  # the viewer from before the flood keeps getting frames
            received += len(viewer.recv(65536))
    finally:
        for s in held:
            s.close()
        viewer.close()
    time.sleep(0.5)
    assert metric(port, "robot_detector_http_rejected_total") >= rejected_before + 1


def test_foreign_host_names_are_refused(daemon):
    port = daemon.http_port
    for host in ["attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io"]:
        for path in ["/snapshot.jpg", "/status.json", "/"]:
            status, body = get(port, path, [("Host", host)])
            assert status == 403 and b"Host" in body, (host, path, status)
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"]:
        assert get(port, "/snapshot.jpg", [("Host", host)])[0] == 200, host


def test_feed_has_the_followed_person(daemon):
    status, body = get(daemon.http_port, "/feed.json?since=0", [("Host", "127.0.0.1")])
    feed = json.loads(body)
    assert status == 200 and feed["window_s"] == 30 and len(feed["frames"]) > 3
    t, offset_x, area, confidence, held = feed["frames"][-1]
    # the demo plants a person at x 0.62, 0.16 x 0.64
    assert offset_x == pytest.approx(0.24, abs=0.02) and area == pytest.approx(0.1024, abs=0.01) and not held
    assert feed["detections"][0]["target"] is True and feed["status"]["state"] == "running"
    later = json.loads(get(daemon.http_port, f"/feed.json?since={t}", [("Host", "127.0.0.1")])[1])
    assert all(point[0] > t for point in later["frames"])  # only what the page does not have yet


def test_quiet_pipes(daemon, person_weights, test_image):
    """The reader of stdout goes away: no traceback, exit 0 or the shell's SIGPIPE status."""
    view = subprocess.run(f"{SCRIPT} view --connect {daemon.pub} | head -1; echo \"exit=${{PIPESTATUS[0]}}\"",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60)
    line, status = view.stdout.splitlines()
    assert line.split(" ", 1)[0] in ("person", "detections", "status") and status in ("exit=0", "exit=141")
    assert view.stderr == "", view.stderr
    # `detect` writes its lines in one block at the end, which `head -1` may still take whole; a
    # reader that is gone before anything is written (`true`) makes the broken pipe certain.
    images = " ".join([str(test_image)] * 3)
    detect = subprocess.run(f"{SCRIPT} detect {images} --json --weights {person_weights['yolov1-tiny']} | true;"
                            " echo \"exit=${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash",
                            capture_output=True, text=True, timeout=120)
    assert detect.stdout.splitlines()[-1] in ("exit=0", "exit=141"), detect
    assert "Traceback" not in detect.stderr and "error" not in detect.stderr.lower(), detect.stderr


def test_token_and_sigterm_with_300_idle_connections(tmp_path):
    log = tmp_path / "daemon.log"
    daemon = Daemon("--demo", env={"ROBOT_DETECTOR_HTTP_TOKEN": TOKEN}, log_path=log).start()
    listener = Listener(daemon.pub, topics=["person", "status"])
    idle = []
    try:
        assert listener.wait_for(lambda l: len(l.of("person")) >= 3, 60), log.read_text()
        port, host = daemon.http_port, ("Host", "127.0.0.1")
        for path in ["/", "/stream.mjpg", "/snapshot.jpg", "/feed.json", "/status.json", "/metrics"]:
            assert get(port, path, [host])[0] == 401, path
            assert get(port, path, [host, ("Authorization", "Bearer wrong-token-of-some-length")])[0] == 401, path
            assert get(port, path, [host, ("Authorization", f"Bearer {TOKEN}")])[0] == 200, path
            assert get(port, f"{path}?token={TOKEN}", [host])[0] == 200, path
        assert get(port, "/healthz", [host])[0] == 200  # monitoring needs no token
        assert get(port, "/status.json?token=" + TOKEN[:-1], [host])[0] == 401
        idle = [connect(port, b"GET / HTTP/1.1\r\n") for _ in range(300)]
        time.sleep(0.5)
        t0 = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.wait(10)
        elapsed = time.monotonic() - t0
        time.sleep(0.3)
    finally:
        for s in idle:
            s.close()
        listener.close()
        daemon.stop()
    assert code == 0 and elapsed < 3.0, (code, elapsed, daemon.stderr)
    assert listener.of("status")[-1]["state"] == "stopping"
    assert "Traceback" not in daemon.stderr and TOKEN not in daemon.stderr


def test_non_loopback_bind_needs_a_token():
    result = run_cli("run", "--demo", "--http", "0.0.0.0:8080", "--pub", "tcp://127.0.0.1:0")
    assert result.returncode == 78 and "--http-token" in result.stderr and "--http-insecure" in result.stderr
    result = run_cli("run", "--demo", "--http", "0.0.0.0:8080", "--http-token", "short")
    assert result.returncode == 2 and "--http-token: expected at least 16" in result.stderr  # a bad value
    assert "short" not in result.stderr  # a secret is never echoed
    result = run_cli("run", "--demo", "--http", "0.0.0.0:8080", env={**os.environ, "ROBOT_DETECTOR_HTTP_TOKEN": "short"})
    assert result.returncode == 78 and "'http_token' must be at least 16" in result.stderr
    assert "short" not in result.stderr
    assert "Traceback" not in result.stderr


def test_encoder_survives_a_frame_it_cannot_draw(caplog):
    """A non-finite box makes drawing raise: the frame is skipped, logged once, counted, and the
    next frame reaches the viewer."""
    from detector.daemon.stream import DebugStream
    stream = DebugStream("127.0.0.1", 0).start()
    port = stream.address[1]
    frame = np.full((120, 160, 3), 80, np.uint8)
    bad = Detection("person", 14, 0.9, math.nan, 0.5, 0.2, 0.4)
    good = Detection("person", 14, 0.9, 0.5, 0.5, 0.2, 0.4)
    parts = []

    def view():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=10) as response:
            while len(parts) < 1:
                line = response.readline()
                if line.lower().startswith(b"content-length:"):
                    response.readline()
                    parts.append(response.read(int(line.split(b":")[1])))

    viewer = threading.Thread(target=view)
    try:
        with caplog.at_level(logging.DEBUG, logger="detector.daemon.frame_encoder"):
            viewer.start()
            deadline = time.monotonic() + 5
            while not stream.frames.viewers and time.monotonic() < deadline:
                time.sleep(0.05)
            for seq in range(3):
                stream.offer(seq, 0.0, frame, [bad], NOBODY)
                time.sleep(0.3)
            stream.offer(3, 0.0, frame, [good], NOBODY)
            viewer.join(10)
    finally:
        stream.stop()
    assert len(parts) == 1 and parts[0][:2] == b"\xff\xd8"  # a JPEG of the good frame
    assert stream.frames.encode_errors == 3 and stream.frames.frames_encoded == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "frame 0 cannot be drawn" in errors[0].getMessage()
    assert all(r.exc_info is None for r in errors)  # one line, no traceback
    assert "robot_detector_stream_encode_errors_total 3" in stream.metrics()
