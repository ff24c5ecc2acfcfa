"""Fail-safe behaviour of the daemon (issue 7, daemon side) and its camera options (issue 8):
real daemon processes, real ZeroMQ and sd_notify sockets; faults are planted, not simulated."""
import os
import subprocess
import sys
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from conftest import ROOT, require_program, run_cli
from daemon_helpers import Daemon, Listener, run_until_exit, write_clip
from darknet_files import make_params, person_last_layer, write_weights
from robot_client import protocol

FAULT_HOOKS = str(Path(__file__).parent / "fault_hooks")


def collect_notify(server, daemon, until, timeout=60):
    """sd_notify datagrams from `daemon` until `until(messages)` or it exits."""
    messages = []
    deadline = time.monotonic() + timeout
    while daemon.process.poll() is None and time.monotonic() < deadline and not until(messages):
        try:
            messages.append(server.recv(4096).decode())
        except socket.timeout:
            pass
    return messages


def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(0.2)
    return server, path


# --- item 7: monotonic grace, `held` ---

def test_grace_is_measured_on_the_monotonic_clock_and_held_is_published(tmp_path):
    """A person seen, then not: held within the grace, dropped after it, even when the wall clock
    steps back ten minutes in between (with wall-clock grace that kept found: true for 10 minutes)."""
    from detector.capture import Frame
    from detector.daemon.config import Config, validate
    from detector.daemon.service import Service
    from detector.model.engines import create_engine
    from detector.model.network import planted_model
    from detector.model.predictor import Predictor
    from detector.model.cfg import shipped_specs

    endpoint = "inproc://grace-test"
    service = Service(validate(Config(demo=True, http=None, pub=endpoint, track_grace_s=0.5), in_process=True))
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"person ")
    sub.connect(endpoint)
    time.sleep(0.1)
    image = np.zeros((480, 640, 3), np.uint8)
    try:
        service.process(Frame(image, 0, t_capture=1_800_000_000.0, t_monotonic=50.0))
        nobody = create_engine(planted_model(shipped_specs()["yolov1-tiny"], []), "onnxruntime")
        service.predictor = Predictor(nobody, service.config.threshold, service.config.nms)
        service.process(Frame(image, 1, t_capture=1_800_000_000.3, t_monotonic=50.3))
        service.process(Frame(image, 2, t_capture=1_800_000_000.3 - 600, t_monotonic=50.9))  # clock stepped back
        messages = [protocol.decode(sub.recv())[1] for _ in range(3)]
    finally:
        sub.close(linger=0)
        service.publisher.close()
    assert [(m["found"], m["held"]) for m in messages] == [(True, False), (True, True), (False, False)]
    assert messages[1]["x"] == messages[0]["x"]  # the held box is the prediction: seen once, it stood still
    assert [m["state"] for m in messages] == ["tracking", "held", "lost"]


def test_held_on_the_wire():
    """`held` is optional (older daemons leave it out) but, when present, a boolean that only a found
    person can carry."""
    found = {"v": 1, "seq": 3, "t_capture": 1.0, "t_publish": 1.1, "frame_w": 640, "frame_h": 480, "found": True,
             "x": 0.5, "y": 0.5, "w": 0.2, "h": 0.4, "area": 0.08, "offset_x": 0.0, "confidence": 0.7}
    lost = dict(found, found=False, **dict.fromkeys(protocol.PERSON_TARGET_FIELDS))
    for payload in (found, dict(found, held=True), dict(found, held=False), lost, dict(lost, held=False)):
        assert protocol.decode(protocol.encode("person", payload))[1] == payload
    for payload, error in ((dict(found, held=1), "field 'held' has type int"), (dict(found, held="true"), "type str"),
                           (dict(lost, held=True), "held is true but found is false")):
        with pytest.raises(protocol.ProtocolError, match=error):
            protocol.decode(protocol.encode("person", payload))


# --- item 10: every thread's failure is noticed ---

def test_non_finite_boxes_are_dropped_counted_and_the_loop_goes_on(tmp_path):
    weights = tmp_path / "nan.weights"
    last_weights, last_biases = person_last_layer("yolov1-tiny", 0.5, 0.4, 0.2, 0.5)
    # The cell holding (0.5, 0.4): its first box's sqrt(w) becomes 1e30, finite in the file (a file with
    # a NaN parameter is refused at load) but infinite once squared in float32, as an engine fault would be.
    cell = 2 * 7 + 3
    last_biases[980 + 98 + cell * 2 * 4 + 2] = 1e30
    write_weights(weights, make_params("yolov1-tiny", 5, (last_weights, last_biases)))
    daemon = Daemon("--source", "synthetic", "--weights", weights, "--max-frames", 8, http=False)
    listener = run_until_exit(daemon)
    for _, raw, _ in listener.messages:
        protocol.decode(raw)  # valid, hence finite: the daemon encodes with allow_nan=False
        assert b"NaN" not in raw and b"Infinity" not in raw
    persons = listener.of("person")
    assert persons and all(m["found"] is False for m in persons)
    assert listener.of("status")[-1]["nonfinite"] >= 8
    assert daemon.stderr.count("non-finite") == 1 and "Traceback" not in daemon.stderr


def test_a_crash_in_the_capture_thread_ends_the_daemon_for_a_restart(tmp_path):
    """The camera driver fails inside the capture thread: the daemon says so once and exits 1
    (systemd's Restart=on-failure restarts it) instead of feeding the watchdog with a blind camera."""
    server, path = notify_socket(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([FAULT_HOOKS, str(ROOT)]), "ROBOT_DETECTOR_TEST_FAULT": "capture-crash:15",
           "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    daemon = Daemon("--source", "synthetic", "--demo", http=False, env=env)
    listener = Listener(daemon.pub, topics=["status", "person"])
    try:
        daemon.start()
        messages = collect_notify(server, daemon, until=lambda m: False, timeout=90)
        code = daemon.wait(10)
        time.sleep(0.3)
    finally:
        server.close()
        listener.close()
        daemon.stop()
    assert code == 1, daemon.stderr
    line = [l for l in daemon.stderr.splitlines() if "capture thread" in l]
    assert len(line) == 1 and "OSError: injected fault" in line[0] and "restarts" in line[0], daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert len(listener.of("person")) <= 15 and listener.of("status")[-1]["state"] == "stopping"
    assert messages[-1] == "STOPPING=1"


def test_a_hung_capture_read_stops_the_watchdog(tmp_path):
    """The camera driver blocks inside read() for good: the watchdog is no longer fed (systemd then
    kills and restarts the daemon), and the log says why, once."""
    server, path = notify_socket(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([FAULT_HOOKS, str(ROOT)]), "ROBOT_DETECTOR_TEST_FAULT": "capture-hang:15",
           "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    daemon = Daemon("--source", "synthetic", "--demo", http=False, env=env)
    received = []
    try:
        daemon.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and daemon.process.poll() is None:
            try:
                received.append((time.monotonic(), server.recv(4096).decode()))
            except socket.timeout:
                pass
            lost = [t for t, m in received if m.startswith("STATUS=camera_lost")]
            if lost and time.monotonic() - lost[0] > 3.5:
                break
        alive, t_end = daemon.process.poll() is None, time.monotonic()
    finally:
        server.close()
        daemon.stop()
    assert alive and lost, (alive, received)
    feeds = [t for t, m in received if m == "WATCHDOG=1"]
    assert feeds and feeds[-1] - lost[0] < 1.5  # the 1 s hang limit (shortened for the test), then silence
    assert t_end - feeds[-1] > 2.0  # ...while the daemon is alive and its loop runs
    assert daemon.stderr.count("no longer feeding the watchdog") == 1, daemon.stderr


# --- item 8: a file that ended stays ended ---

def test_a_clip_without_loop_is_played_once(tmp_path):
    clip = write_clip(tmp_path / "five.avi", frames=5, fps=10)
    weights = tmp_path / "p.weights"
    write_weights(weights, make_params("yolov1-tiny", 1, person_last_layer("yolov1-tiny", .5, .5, .2, .2)))
    with Daemon("--source", clip, "--weights", weights, http=False) as daemon:
        listener = Listener(daemon.pub, topics=["status", "person"])
        try:
            assert listener.wait_for(lambda l: any(s["state"] == "camera_lost" for s in l.of("status")), 60)
            time.sleep(2.0)  # a replay (the old reopen-with-backoff) would hand out more frames here
        finally:
            listener.close()
    persons, last = listener.of("person"), listener.of("status")[-1]
    assert last["frames"] + last["dropped"] == 5, last
    assert persons[-1]["seq"] == last["frames"] - 1  # no frame after the last of the clip (the first may
    # be missed by the subscriber while it connects)
    assert "ended after 5 frames" in daemon.stderr


# --- item 13: no camera at boot ---

def test_no_camera_at_boot_is_ready_and_reports_camera_lost(person_weights, tmp_path):
    """A by-id camera path (a symlink to a character device that is no camera) under sd_notify
    supervision: READY=1 once the model is loaded, then camera_lost in STATUS= and on `status`."""
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    camera = by_id / "usb-Absent_Cam-video-index0"
    camera.symlink_to("/dev/null")
    server, path = notify_socket(tmp_path)
    daemon = Daemon("--source", camera, "--weights", person_weights["yolov1-tiny"], "--width", 640, "--fourcc", "MJPG",
                    http=False, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    listener = Listener(daemon.pub, topics=["status"])
    try:
        daemon.start()
        messages = collect_notify(server, daemon, until=lambda m: any("camera_lost" in x for x in m), timeout=90)
        assert listener.wait_for(lambda l: any(s["state"] == "camera_lost" for s in l.of("status")), 10)
        assert daemon.process.poll() is None  # alive, retrying the camera, not failing its start
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    finally:
        server.close()
        listener.close()
        daemon.stop()
    ready = [i for i, m in enumerate(messages) if "READY=1" in m]
    lost = [i for i, m in enumerate(messages) if m.startswith("STATUS=camera_lost")]
    assert len(ready) == 1 and lost and ready[0] < lost[0], messages
    assert f"camera {camera} lost or not opening" in daemon.stderr and "Traceback" not in daemon.stderr


# --- issue 8 item 4: --max-fps ---

def test_max_fps_caps_processing_while_capture_keeps_draining(person_weights):
    with Daemon("--source", "synthetic", "--weights", person_weights["yolov1-tiny"], "--max-fps", 4,
                http=False) as daemon:
        listener = Listener(daemon.pub, topics=["person", "status"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 2, 60)
            time.sleep(2.5)
        finally:
            listener.close()
    received = [t for topic, _, t in listener.messages if topic == "person"][1:]  # skip the first (start-up)
    rate = (len(received) - 1) / (received[-1] - received[0])
    assert 3.0 < rate < 4.6, rate  # the synthetic camera gives 30 frames a second
    last = listener.of("status")[-1]
    assert last["dropped"] > 3 * last["frames"]  # the capture kept taking the newest frame


# --- item 11: config holes, and the command line ---

@pytest.mark.parametrize("toml, message", [
    ("weights = 5\n", "'weights' must be text (or left out), found 5"),
    ("classes = [1]\n", "'classes' must be a list of names, found [1]"),
    ("track_grace_s = inf\n", "'track_grace_s' must be a number of seconds from 0 to 3, found inf"),
    ("status_interval_s = nan\n", "'status_interval_s' must be a number of seconds from 0.1 to 5, found nan"),
    ("max_fps = -inf\n", "'max_fps' must be a number of frames per second from 1 to 1000 (or left out), found -inf"),
    ('http = "[::1]:8080"\n', "'http' must be an IPv4 address or host name with a port"),
    ('loop = "yes"\n', "'loop' must be true or false, found 'yes'"),
    ('camera_fourcc = "MJPEG"\n', "'camera_fourcc' must be a pixel format code"),
    ("camera_width = 640.5\n", "'camera_width' must be a whole number of pixels from 16 to 7680 (or left out), "
                               "found 640.5"),
    ("send_hwm = 1e400\n", "'send_hwm' must be a whole number from 1 to 1000, found inf"),
    # issue 17 item 7
    ("send_hwm = 99999999999\n", "'send_hwm' must be a whole number from 1 to 1000, found 99999999999"),
    ("track_grace_s = 86400\n", "'track_grace_s' must be a number of seconds from 0 to 3, found 86400"),
    ("status_interval_s = 1e300\n", "'status_interval_s' must be a number of seconds from 0.1 to 5, found 1e+300"),
    ("max_fps = 1e-300\n", "'max_fps' must be a number of frames per second from 1 to 1000 (or left out), "
                          "found 1e-300"),
    ('pub = "inproc://x"\n', "'pub' must be a tcp:// or ipc:// endpoint (inproc:// reaches only threads"),
    ('pub = "tcp://0.0.0.0:5556"\n', "would publish the positions of people on tcp://0.0.0.0:5556"),
    ('precision = "int16"\n', "'precision' must be fp32 or int8, found 'int16'"),
])
def test_wrong_config_values_exit_78_with_one_line(tmp_path, toml, message):
    config = tmp_path / "bad.toml"
    config.write_text('source = "synthetic"\n' + toml)
    result = run_cli("run", "--config", config)
    assert result.returncode == 78 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_camera_options_on_the_command_line(tmp_path):
    for args, code, message in [
        (["--fourcc", "MJPEG"], 2, "--fourcc: expected a pixel format code of up to 4 letters or digits"),
        (["--width", "0"], 2, "--width: expected a whole number of pixels from 16 to 7680, found '0'"),
        (["--fps", "nan"], 2, "--fps: expected a number of frames per second from 1 to 240, found 'nan'"),
        (["--max-fps", "inf"], 2, "--max-fps: expected a number of frames per second from 1 to 1000, found 'inf'"),
    ]:
        result = run_cli("run", "--source", "/dev/video0", *args)
        assert result.returncode == code and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr  # one line, no usage block


def test_log_level_before_the_subcommand(tmp_path):
    result = run_cli("--log-level", "warning", "run", "--demo", "--no-http", "--max-frames", 2,
                     "--pub", f"ipc://{tmp_path}/log-level.sock")
    assert result.returncode == 0, result.stderr
    assert " INFO " not in result.stderr  # before the fix the subcommand reset the level to info


def test_gpu_drop_in_verifies(tmp_path):
    """The GPU drop-in applies to the shipped unit and systemd-analyze accepts both together."""
    analyze = require_program("systemd-analyze")
    unit = (ROOT / "systemd" / "robot-detector.service").read_text().replace("/opt/robot-detector/bin",
                                                                                str(Path(sys.executable).parent))
    (tmp_path / "robot-detector.service").write_text(unit)
    drop_in = tmp_path / "robot-detector.service.d"
    drop_in.mkdir()
    text = (ROOT / "systemd" / "robot-detector.service.d" / "gpu.conf").read_text()
    (drop_in / "gpu.conf").write_text(text)
    assert "DeviceAllow=char-nvidia-frontend" in text and "CUPY_CACHE_DIR" in text
    result = subprocess.run([analyze, "verify", str(tmp_path / "robot-detector.service")],
                                          capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    (drop_in / "gpu.conf").write_text(text + "DeviceAllow=not-a-device-spec wx\n")  # the drop-in is really read
    result = subprocess.run([analyze, "verify", str(tmp_path / "robot-detector.service")],
                                          capture_output=True, text=True, timeout=60)
    assert "not-a-device-spec" in result.stderr, result.stderr


# --- item 14: --device gpu:N ---

def test_gpu_n_runs_inside_device_n():
    """Skipped without CuPy and a CUDA GPU. With them, the last GPU is used: its input and every
    array of the forward pass live on it, and the output matches the CPU engine's."""
    cupy = pytest.importorskip("cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy's CUDA errors vary with the driver
        pytest.skip(f"CUDA is not usable: {error}")
    if not count:
        pytest.skip("no CUDA device")
    import chainer
    from detector.model.engines import create_engine
    from detector.model.network import planted_model
    from detector.model.cfg import shipped_specs
    gpu = count - 1
    model = planted_model(shipped_specs()["yolov1-tiny"], [(0.5, 0.5, 0.2, 0.4)])
    engine = create_engine(model, "chainer", f"gpu:{gpu}")
    seen = []

    class Where(chainer.LinkHook):
        name = "where"

        def forward_preprocess(self, args):
            seen.extend(chainer.backend.get_device_from_array(getattr(a, "array", a)) for a in args.args)

    blob = np.random.default_rng(0).random((1, 3, 448, 448), dtype=np.float32)
    with cupy.cuda.Device(0), Where():  # the current device is 0, as in the daemon's thread
        raw = engine.infer(blob)
    assert seen and all(getattr(d, "device", None) is not None and d.device.id == gpu for d in seen), seen
    np.testing.assert_allclose(raw, create_engine(model, "chainer", "cpu").infer(blob), atol=1e-4)
