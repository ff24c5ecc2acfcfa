"""The daemon end to end, with real sockets on loopback."""
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
import zmq

from conftest import run_cli
from daemon_helpers import Daemon, Listener, MjpegServer, free_port, run_until_exit, write_clip
from robot_client import protocol


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_every_message_follows_the_schema(person_weights):
    frames = 90
    listener = run_until_exit(Daemon("--source", "synthetic", "--weights", person_weights["yolo-tiny"],
                                     "--max-frames", frames, http=False))
    persons, detections, statuses = listener.of("person"), listener.of("detections"), listener.of("status")
    for topic, raw, _ in listener.messages:  # every field of every message, by the shared schema
        protocol.decode(raw)
    seqs = [m["seq"] for m in persons]
    assert seqs == list(range(seqs[0], frames)) and seqs[0] <= 10  # strictly increasing, no repeats or gaps
    assert [m["seq"] for m in detections] == seqs                  # one of each per processed frame
    for m in persons:
        assert m["found"] is True and m["t_capture"] <= m["t_publish"] <= time.time()
        assert (m["frame_w"], m["frame_h"]) == (640, 480)
    # the weights plant a person at (0.75, 0.4), 0.2 x 0.5: the published target is that place
    last = persons[-1]
    assert (last["x"], last["y"], last["w"], last["h"]) == pytest.approx((0.75, 0.4, 0.2, 0.5), abs=0.01)
    assert last["offset_x"] == pytest.approx(0.5, abs=0.01) and last["area"] == pytest.approx(0.1, abs=0.01)
    assert detections[-1]["detections"][0]["cls"] == "person"
    # one person, one track: the target's id is the id of its detection in every frame (issue 18)
    assert {m["track_id"] for m in persons} == {persons[0]["track_id"]} and persons[0]["track_id"] is not None
    assert all(m["state"] == "tracking" for m in persons)
    assert all(d["detections"][0]["track_id"] == p["track_id"] for d, p in zip(detections, persons))
    # heartbeats: the run lasts ~3 s at the synthetic camera's 30 fps: at least two running heartbeats
    assert sum(s["state"] == "running" for s in statuses) >= 2
    assert statuses[-1]["state"] == "stopping" and statuses[-1]["frames"] == frames
    assert statuses[-1]["engine"] == "onnxruntime" and statuses[-1]["demo"] is False


def test_no_person_publishes_found_false(tmp_path):
    from darknet_files import make_params, write_weights
    layers = make_params("yolov1-tiny", seed=4, last_layer=(np.zeros((1470, 12544)), np.zeros(1470)))
    write_weights(tmp_path / "empty.weights", layers)
    listener = run_until_exit(Daemon("--source", "synthetic", "--weights", tmp_path / "empty.weights",
                                     "--max-frames", 10, http=False), topics=["person"])
    persons = listener.of("person")
    assert persons and all(m["found"] is False for m in persons)
    assert all(m[k] is None for m in persons for k in protocol.PERSON_TARGET_FIELDS)


def read_mjpeg_parts(url, count, timeout=20):
    """Read `count` JPEG parts from a multipart/x-mixed-replace response with a real HTTP client."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers.get_content_type() == "multipart/x-mixed-replace"
        boundary = response.headers.get_param("boundary").encode()
        parts = []
        while len(parts) < count:
            line = response.readline()
            if line.strip() != b"--" + boundary:
                continue
            headers = {}
            while (line := response.readline().strip()):
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            parts.append(response.read(int(headers["content-length"])))
        return parts


def test_http_debug_stream(person_weights):
    with Daemon("--source", "synthetic", "--weights", person_weights["yolov1-tiny"]) as daemon:
        listener = Listener(daemon.pub, topics=["person"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 3, 60), daemon.args
        finally:
            listener.close()
        parts = read_mjpeg_parts(daemon.url + "/stream.mjpg", 3)
        images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
        assert all(image is not None and image.shape == (480, 640, 3) for image in images)
        # the target is drawn in red around the planted person (centre 0.75, 0.4 of the frame)
        red = (images[-1][..., 2] > 200) & (images[-1][..., 1] < 60) & (images[-1][..., 0] < 60)
        assert red[:, 400:560].sum() > 200
        status, headers, body = http_get(daemon.url + "/snapshot.jpg")
        assert status == 200 and cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) is not None
        status, _, body = http_get(daemon.url + "/status.json")
        assert status == 200
        protocol.validate("status", json.loads(body))
        assert http_get(daemon.url + "/healthz")[0] == 200
        status, headers, body = http_get(daemon.url + "/metrics")
        assert status == 200 and headers.get_content_type() == "text/plain"
        metrics = dict(line.rsplit(" ", 1) for line in body.decode().splitlines() if not line.startswith("#"))
        assert float(metrics["robot_detector_frames_total"]) > 0
        assert metrics['robot_detector_state{state="running"}'] == "1"
        status, _, body = http_get(daemon.url + "/")
        assert status == 200 and b"url('/stream.mjpg')" in body
        assert http_get(daemon.url + "/nope")[0] == 404


def metrics(daemon):
    body = http_get(daemon.url + "/metrics")[2].decode()
    return {key: float(value) for key, value in (line.rsplit(" ", 1) for line in body.splitlines()
                                                 if not line.startswith("#"))}


def test_frames_are_encoded_once_and_only_while_someone_watches(person_weights):
    with Daemon("--source", "synthetic", "--weights", person_weights["yolov1-tiny"]) as daemon:
        listener = Listener(daemon.pub, topics=["status"])
        try:
            assert listener.wait_for(lambda l: any(s["frames"] > 30 for s in l.of("status")), 60)
        finally:
            listener.close()
        idle = metrics(daemon)
        assert idle["robot_detector_stream_viewers"] == 0
        assert idle["robot_detector_stream_frames_encoded_total"] == 0  # nobody watched: nothing encoded
        # two viewers at once share one encoding per frame
        results = []
        viewers = [threading.Thread(target=lambda: results.append(read_mjpeg_parts(daemon.url + "/stream.mjpg", 20)))
                   for _ in range(2)]
        frames = Listener(daemon.pub, topics=["person"])
        try:
            assert frames.wait_for(lambda l: len(l.of("person")) >= 1, 30)
            before = metrics(daemon)["robot_detector_stream_frames_encoded_total"]
            first_seq = frames.of("person")[-1]["seq"]
            for viewer in viewers:
                viewer.start()
            for viewer in viewers:
                viewer.join(30)
            encoded = metrics(daemon)["robot_detector_stream_frames_encoded_total"] - before
            processed = frames.of("person")[-1]["seq"] - first_seq
        finally:
            frames.close()
        assert len(results) == 2 and all(len(parts) == 20 for parts in results)
        assert 20 <= encoded <= processed + 2  # at most one encoding per processed frame, not one per viewer
        deadline = time.monotonic() + 5
        while metrics(daemon)["robot_detector_stream_viewers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metrics(daemon)["robot_detector_stream_viewers"] == 0


def test_a_stalled_viewer_does_not_stall_detection(person_weights):
    with Daemon("--source", "synthetic", "--weights", person_weights["yolov1-tiny"]) as daemon:
        listener = Listener(daemon.pub, topics=["person"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 5, 60)
            count = len(listener.of("person"))
            time.sleep(2.0)
            unwatched = len(listener.of("person")) - count  # this machine's rate, however busy it is
            stalled = socket.create_connection(("127.0.0.1", daemon.http_port))
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # ...and never reads
            time.sleep(2.0)  # its socket buffers fill with JPEG parts and its sender blocks
            count = len(listener.of("person"))
            time.sleep(2.0)
            processed = len(listener.of("person")) - count
            stalled.close()
        finally:
            listener.close()
    # a loop blocked by the viewer would give ~0; encoding for a viewer costs some of the rate
    assert unwatched >= 10 and processed >= unwatched / 2, (unwatched, processed)


def test_camera_loss_and_recovery(tmp_path):
    """A network camera (a real MJPEG stream over HTTP) goes away and comes back."""
    camera = MjpegServer(fps=10).start()
    from darknet_files import make_params, person_last_layer, write_weights
    write_weights(tmp_path / "p.weights", make_params("yolov1-tiny", 1, person_last_layer("yolov1-tiny", .5, .5, .2, .2)))
    with Daemon("--source", camera.url, "--weights", tmp_path / "p.weights") as daemon:
        listener = Listener(daemon.pub, topics=["status", "person"])
        try:
            # frames flowing, seen by this subscriber: "running" alone can arrive before any person
            # message does (a subscription is live for one topic a moment before the other)
            assert listener.wait_for(lambda l: any(s["state"] == "running" for s in l.of("status"))
                                     and len(l.of("person")) >= 3, 60)
            assert http_get(daemon.url + "/healthz")[0] == 200
            camera.stop()  # unplugged
            assert listener.wait_for(lambda l: l.of("status")[-1]["state"] == "camera_lost", 10)
            lost = next(s for s in listener.of("status") if s["state"] == "camera_lost")
            last_frame = listener.of("person")[-1]["t_capture"]
            assert lost["t"] - last_frame < 1.0 + 0.1  # noticed within 1 s of the last frame (10 fps clip)
            time.sleep(1.5)
            status, _, body = http_get(daemon.url + "/healthz")
            assert status == 503 and b"camera_lost" in body
            camera.start()  # plugged back in: reopened with backoff, running by itself
            assert listener.wait_for(lambda l: l.of("status")[-1]["state"] == "running", 10)
            assert http_get(daemon.url + "/healthz")[0] == 200
        finally:
            listener.close()
            camera.stop()


def test_sigterm_stops_cleanly_within_3_s(person_weights):
    daemon = Daemon("--source", "synthetic", "--weights", person_weights["yolo-tiny"]).start()
    listener = Listener(daemon.pub)
    try:
        assert listener.wait_for(lambda l: len(l.of("person")) >= 5, 60)
        t0 = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.wait(10)
        elapsed = time.monotonic() - t0
        time.sleep(0.3)
    finally:
        listener.close()
        daemon.stop()
    assert code == 0 and elapsed < 3.0, (code, elapsed, daemon.stderr)
    assert listener.of("status")[-1]["state"] == "stopping"
    assert "Traceback" not in daemon.stderr


def test_sd_notify_over_a_real_datagram_socket(person_weights, tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(0.2)
    daemon = Daemon("--source", "synthetic", "--weights", person_weights["yolov1-tiny"], "--max-frames", 30,
                    http=False, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    messages = []
    try:
        daemon.start()
        deadline = time.monotonic() + 90
        while daemon.process.poll() is None and time.monotonic() < deadline:
            try:
                messages.append(server.recv(4096).decode())
            except socket.timeout:
                pass
        daemon.wait(10)
    finally:
        server.close()
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    # READY once the model is loaded (a missing camera must not fail the start), and only once
    assert messages[ready] == "READY=1\nSTATUS=starting, model loaded"
    assert any(m.startswith("STATUS=running") for m in messages[ready:])
    assert sum("READY=1" in m for m in messages) == 1
    assert sum(m == "WATCHDOG=1" for m in messages) >= 2  # every 0.25 s over a ~2 s run
    assert any(m.startswith("STATUS=") for m in messages)
    assert messages[-1] == "STOPPING=1" and ready < len(messages) - 1


def test_slow_subscriber_costs_no_memory(tmp_path, small_model):
    """A subscriber that never reads: the daemon's RSS stays flat over 2,000 frames. The messages
    are what matters, not the model: a small network reporting a person keeps the frames fast."""
    clip = write_clip(tmp_path / "fast.avi", frames=100, fps=500, size=(160, 120))
    weights, cfg = small_model
    sub = zmq.Context.instance().socket(zmq.SUB)
    with Daemon("--source", clip, "--loop", "--weights", weights, "--cfg", cfg, "--max-frames", 2000,
                "--log-level", "warning", http=False) as daemon:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 1)
        sub.connect(daemon.pub)  # ...and never reads
        status_file = f"/proc/{daemon.process.pid}/status"

        def rss_kib():
            with open(status_file) as f:
                return int(next(line for line in f if line.startswith("VmRSS")).split()[1])

        stats = Listener(daemon.pub, topics=["status"])
        try:
            assert stats.wait_for(lambda l: any(s["frames"] >= 300 for s in l.of("status")), 120)
            early = rss_kib()
            assert stats.wait_for(lambda l: any(s["frames"] >= 1900 for s in l.of("status")), 300)
            late = rss_kib()
        finally:
            stats.close()
        assert daemon.wait(120) == 0
    sub.close(linger=0)
    assert late - early < 20 * 1024, (early, late)  # KiB


@pytest.mark.parametrize("toml, message", [
    ('source = "synthetic"\nthreshhold = 0.3\n', "unknown key(s) threshhold"),
    ("nms = 2\n", "'nms' must be a number from 0 to 1, found 2"),
    ('pub = "tcp://0.0.0.0"\n', "'pub' must be a ZeroMQ endpoint"),
    ('http = "localhost"\n', "'http' must be HOST:PORT"),
    ("max_frames = 0\n", "'max_frames' must be a whole number from 1 to 1_000_000_000 (or left out), found 0"),
    ("source = [1,\n", "not valid TOML"),
])
def test_config_file_errors_exit_78(tmp_path, toml, message):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    result = run_cli("run", "--config", config)
    assert result.returncode == 78 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_cli_overrides_the_config_file(person_weights, tmp_path):
    port = free_port()
    config = tmp_path / "ok.toml"
    config.write_text(f'source = "synthetic"\nweights = "{person_weights["yolov1-tiny"]}"\nmax_frames = 500\n'
                      f'pub = "tcp://127.0.0.1:{port}"\nhttp = false\n')
    t0 = time.monotonic()
    result = run_cli("run", "--config", config, "--max-frames", "3")
    assert result.returncode == 0, result.stderr
    assert "stopped after 3 frames" in result.stderr and time.monotonic() - t0 < 60


def test_run_without_weights_says_how_to_get_them(tmp_path):
    empty = tmp_path / "weights"
    empty.mkdir()
    # the first two folders of the search path are empty ones; the service folder is absent in CI
    env = {**os.environ, "ROBOT_DETECTOR_WEIGHTS": str(empty), "XDG_DATA_HOME": str(tmp_path / "data")}
    result = run_cli("run", "--source", "synthetic", "--no-http", env=env)
    assert result.returncode == 78
    assert "No pretrained weights found" in result.stderr and "weights fetch" in result.stderr and "--demo" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_source_file_is_a_clear_error(person_weights, tmp_path):
    result = run_cli("run", "--source", tmp_path / "nope.mp4", "--weights", person_weights["yolov1-tiny"], "--no-http")
    assert result.returncode == 78 and "does not exist" in result.stderr and "camera index" in result.stderr


def test_real_pedestrian_clip_through_the_daemon(media, person_weights):
    """The shared pedestrian clip (H.264, 480x360, 10 fps) as the camera: real decoding, pacing and
    frame sizes through the whole daemon and the debug stream."""
    with Daemon("--source", media / "vtest_opencv.avi", "--weights", person_weights["yolov1-tiny"]) as daemon:
        listener = Listener(daemon.pub)
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 15, 60)
        finally:
            listener.close()
        persons = listener.of("person")
        assert {(m["frame_w"], m["frame_h"]) for m in persons} == {(480, 360)}
        gaps = np.diff([m["t_capture"] for m in persons])
        assert 0.07 < np.median(gaps) < 0.14  # paced at the clip's 10 fps, like a camera
        [jpeg] = read_mjpeg_parts(daemon.url + "/stream.mjpg", 1)
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (360, 480, 3)


def test_detect_on_real_photos(media, person_weights):
    images = [media / "darknet_kite.jpg", media / "skimage_astronaut.png", media / "darknet_dog.jpg"]
    result = run_cli("detect", *images, "--weights", person_weights["yolo-tiny"], "--json")
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["width"], r["height"]) for r in reports] == [(1352, 900), (512, 512), (768, 576)]


def test_bad_weights_stop_the_service_for_good(tmp_path):
    """A truncated weights file is a configuration problem: exit 78, so systemd does not restart."""
    short = tmp_path / "short.weights"
    short.write_bytes(b"\0" * 5000)
    result = run_cli("run", "--source", "synthetic", "--weights", short, "--no-http")
    assert result.returncode == 78 and "matches no shipped cfg" in result.stderr
    result = run_cli("run", "--source", "synthetic", "--demo", "--device", "gpu:3", "--no-http")
    assert result.returncode == 78 and "--device gpu:3 needs CuPy" in result.stderr
