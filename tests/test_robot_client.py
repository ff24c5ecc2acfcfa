"""The robot client for real: the ev3dev2 library on a fake sysfs tree, ZeroMQ on loopback, a real
sshd for the tunnel, and the real daemon at the other end."""
import os
import re
import socket
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import ROOT, require_program
from daemon_helpers import Daemon, Listener, MjpegServer, free_port
from darknet_files import make_params, person_last_layer, write_weights
from ev3_helpers import FakeMotorTree, Sshd, ev3_python, publisher, start_client, stop_client, wait_until_following
from robot_client import protocol


def person_message(seq, offset_x=0.5, area=0.15, found=True, t_publish=None, still=False, h=0.5, bottom=0.75,
                   **extra):
    """A person message as the daemon sends it; the box jitters by a pixel or so from frame to frame
    as a real detector's does, unless `still` (a frozen camera)."""
    x = (offset_x + 1) / 2
    t_publish = time.time() if t_publish is None else t_publish
    message = {"v": 1, "seq": seq, "t_capture": t_publish - 0.05, "t_publish": t_publish, "frame_w": 640,
               "frame_h": 480, "found": found, **extra}
    if found:
        w = area / h + (0 if still else 0.002 * (seq % 3))  # the width steers nothing
        message.update(x=x, y=bottom - h / 2, w=w, h=h, area=area, offset_x=offset_x, confidence=0.9)
    else:
        message.update(dict.fromkeys(protocol.PERSON_TARGET_FIELDS))
    return protocol.encode("person", message)


def status_message(demo=False, state="running", **extra):
    return protocol.encode("status", {"v": 1, "t": time.time(), "state": state, "fps": 30.0,
                                      "latency_ms": {"p50": 40.0, "p95": 60.0}, "frames": 1, "dropped": 0,
                                      "engine": "onnxruntime", "device": "cpu", "demo": demo, **extra})


def send_for(sock, seconds, offset_x=0.5, rate_hz=30, found=True, seq=0, status={}, clock_s=0.0, still=False,
             **extra):
    """Person messages at `rate_hz`, and a status (its fields: `status`; None: none) every 10th, as
    the daemon sends them, on a PC clock `clock_s` off; `extra`: fields of the person messages
    (run_id: of both). Returns the next seq."""
    end = time.monotonic() + seconds
    run = {"run_id": extra["run_id"]} if extra.get("run_id") else {}
    while time.monotonic() < end:
        if seq % 10 == 0 and status is not None:
            sock.send(status_message(**status, **run))
        sock.send(person_message(seq, offset_x, found=found, t_publish=time.time() + clock_s, still=still, **extra))
        seq += 1
        time.sleep(1 / rate_hz)
    return seq


MAX_TIME_SP_MS = 300  # the longest a drive command may keep the wheels turning without the client


def run_timed_commands(tree, port, after=0.0):
    """Times of the run-timed commands on `port` since `after`, checking on the way that every
    command is one that ends by itself and every time_sp written is at most MAX_TIME_SP_MS."""
    timed = []
    for t, p, attribute, value in list(tree.log):
        if p != port or t < after:
            continue
        if attribute == "time_sp":
            assert 0 < int(value) <= MAX_TIME_SP_MS, f"{port}: time_sp {value}"
        elif attribute == "command":
            # "reset" (ev3dev2 at start-up) and "stop" halt the motor; the only run is a timed one
            assert value in ("run-timed", "stop", "reset"), f"{port}: command {value} runs until told otherwise"
            if value == "run-timed":
                timed.append(t)
    return timed


def turning_right(tree):
    left, right = tree.last("outB", "speed_sp"), tree.last("outC", "speed_sp")
    return (left is not None and right is not None and int(left) > 0 > int(right)
            and tree.last("outB", "command") == "run-timed")


def steering_right(tree):
    """Following a person on the right: the left wheel faster (the daemon's synthetic person stands
    still while the robot believes it drives, so the controller may also drive forward)."""
    left, right = tree.last("outB", "speed_sp"), tree.last("outC", "speed_sp")
    return (left is not None and right is not None and int(left) > int(right)
            and tree.last("outB", "command") == "run-timed")


def test_vermin_says_python_3_5():
    vermin = require_program("vermin") if not (ROOT / ".venv/bin/vermin").exists() else str(ROOT / ".venv/bin/vermin")
    result = subprocess.run([vermin, "-t=3.5-", "--no-tips", "--violations", str(ROOT / "robot_client")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted(p.name for p in (ROOT / "robot_client").glob("*.py"))
    assert len(files) >= 6 and f"Analyzing {len(files)} files" in result.stdout


def test_client_parses_as_python_3_5_and_uses_only_stdlib_and_zmq():
    import ast
    allowed = {"argparse", "collections", "json", "logging", "math", "os", "re", "signal", "socket", "subprocess", "sys",
               "tempfile", "time", "zmq", "ev3dev2", "ev3dev2.motor", "ev3dev2.sound"}
    for path in sorted((ROOT / "robot_client").glob("*.py")):
        source = path.read_text()
        tree = ast.parse(source, str(path), feature_version=(3, 5))  # rejects f-strings and newer syntax
        # vermin misses underscores in numeric literals (3.6+)
        assert not re.search(r"\b\d+_\d", source), f"{path.name}: numeric literal with an underscore"
        for node in ast.walk(tree):
            assert not isinstance(node, ast.AnnAssign), f"{path.name}:{node.lineno}: variable annotation"
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                assert set(names) <= allowed, f"{path.name}:{node.lineno}: imports {names}"


def test_right_turn_then_stop_on_silence(tmp_path):
    tree = FakeMotorTree(tmp_path / "sys")
    sock, endpoint = publisher()
    client = start_client("--connect", endpoint, "--sysfs-root", tree.root, "--timeout-ms", 300, tmp_path=tmp_path)
    try:
        wait_until_following(client, tmp_path / "client.log")
        send_for(sock, 1.5, offset_x=0.6)
        t_last = time.monotonic()
        assert turning_right(tree), tree.log[-6:]
        assert int(tree.last("outB", "speed_sp")) == -int(tree.last("outC", "speed_sp"))  # on the spot
        # silence: a stop (brake: stop_action hold, command stop) within 0.5 s of the last message
        assert tree.wait_for(lambda: tree.first_time("outB", "command", "stop", after=t_last), 2.0)
        t_stop = max(tree.first_time(port, "command", "stop", after=t_last) or 1e9 for port in ("outB", "outC"))
        assert t_stop - t_last < 0.5, t_stop - t_last
        assert tree.last("outB", "stop_action") == tree.last("outC", "stop_action") == "hold"
        assert client.poll() is None
    finally:
        stop_client(client)
        tree.close()
        sock.close()


def test_sigterm_stops_the_motors(tmp_path):
    tree = FakeMotorTree(tmp_path / "sys")
    sock, endpoint = publisher()
    client = start_client("--connect", endpoint, "--sysfs-root", tree.root, "--timeout-ms", 1000, tmp_path=tmp_path)
    try:
        wait_until_following(client, tmp_path / "client.log")
        send_for(sock, 1.0, offset_x=-0.6)
        assert tree.last("outC", "command") == "run-timed"
        t_term = time.monotonic()
        client.send_signal(signal.SIGTERM)
        assert client.wait(5) == 0
        assert tree.wait_for(lambda: tree.first_time("outC", "command", "stop", after=t_term), 1.0)
    finally:
        stop_client(client)
        tree.close()
        sock.close()


def non_finite_frames():
    """Valid messages but for one number: NaN, Infinity, -Infinity (accepted by json.loads) and 1e999
    (parsed as inf)."""
    person = person_message(2, offset_x=0.7)
    return [person.replace(b'"offset_x":0.7', b'"offset_x":NaN'), person.replace(b'"area":0.15', b'"area":Infinity'),
            person.replace(b'"offset_x":0.7', b'"offset_x":-Infinity'), person.replace(b'"area":0.15', b'"area":1e999'),
            status_message().replace(b'"p50":40.0', b'"p50":NaN')]


def test_protocol_refuses_non_finite_numbers():
    for frame in non_finite_frames():
        with pytest.raises(protocol.ProtocolError, match="non-finite"):
            protocol.decode(frame)
    message = protocol.decode(person_message(1))[1]
    protocol.validate("person", message)
    with pytest.raises(protocol.ProtocolError, match="person.offset_x: non-finite"):
        protocol.validate("person", {**message, "offset_x": float("nan")})
    status = protocol.decode(status_message())[1]
    with pytest.raises(protocol.ProtocolError, match="status.latency_ms.p95: non-finite"):
        protocol.validate("status", {**status, "latency_ms": {"p50": 1.0, "p95": float("-inf")}})


def test_protocol_optional_fields_are_typed_and_consistent():
    person = protocol.decode(person_message(1))[1]
    status = protocol.decode(status_message())[1]
    protocol.validate("person", {**person, "run_id": "a1b2", "track_id": 3, "state": "held", "held": True})
    protocol.validate("status", {**status, "run_id": "a1b2", "live": False, "reason": "frozen"})
    lost = {**person, **{name: None for name in protocol.PERSON_TARGET_FIELDS}, "found": False}
    protocol.validate("person", {**lost, "state": "lost", "track_id": None})
    bad = [("person", {**person, "state": "lost"}, "contradicts found"),
           ("person", {**lost, "state": "tracking"}, "contradicts found"),
           ("person", {**person, "state": "dancing"}, "unknown state"),
           ("person", {**lost, "track_id": 2}, "track_id is set"),
           ("person", {**person, "track_id": "2"}, "'track_id' has type str"),
           ("person", {**person, "run_id": 7}, "'run_id' has type int"),
           ("status", {**status, "live": 1}, "'live' must not be a number|'live' has type int"),
           ("detections", {"v": 1, "seq": 1, "t_capture": 1.0, "t_publish": 1.0, "frame_w": 4, "frame_h": 4,
                           "detections": [{"cls": "person", "cls_id": 14, "confidence": 0.5, "x": 0.5,
                                           "y": 0.5, "w": 0.1, "h": 0.1, "track_id": True}]},
            "'track_id' must not be a boolean")]
    for topic, payload, message in bad:
        with pytest.raises(protocol.ProtocolError, match=message):
            protocol.validate(topic, payload)


def test_malformed_messages_are_counted_and_ignored(tmp_path):
    sock, endpoint = publisher()
    client = start_client("--connect", endpoint, "--dry-run", "--run-seconds", 5, tmp_path=tmp_path)
    wait_until_following(client, tmp_path / "client.log")
    bad = [b"person ", b"person {not json", b"person " + '{"v":1}'.encode(), b"person [1,2]",
           b"person \xff\xfe", protocol.encode("person", {"v": 2})[:-1] + b"}",
           b'person {"v":1,"seq":"x"}', b"status " + b'{"v":1,"state":"dancing"}', *non_finite_frames()]
    sock.send(status_message())  # the client would drive on the bad ones if they were accepted
    for frame in bad:  # spaced out: CONFLATE would rightly keep only the newest of a burst
        sock.send(frame)
        time.sleep(0.15)
    sock.send(status_message())  # as the daemon does every second: the client waited 2 s for it
    time.sleep(0.1)
    for seq in range(10, 20):
        sock.send(person_message(seq, offset_x=0.7))
        time.sleep(0.03)
    client.wait(timeout=15)
    sock.close()
    output = (tmp_path / "client.log").read_text()
    assert client.returncode == 0, output
    assert "Traceback" not in output
    # Only the good messages (a person on the right) were driven on, none of the garbage (which
    # includes a person far to the left, offset_x -Infinity); the client still follows after it.
    drives = [(float(left), float(right)) for left, right in re.findall(r"drive left=(\S+)% right=(\S+)%", output)]
    assert drives and all(left > 0 > right for left, right in drives), output
    done = re.search(r"done: (\d+) messages, (\d+) malformed", output)
    assert done and int(done.group(2)) == len(bad) and int(done.group(1)) >= 1, output


def test_brick_unit_stops_the_motors_whatever_ends_the_client():
    """The brick's unit keeps the safety nets the safety table in docs/safety.md counts on: a watchdog that
    kills a hung loop, a brake after any end, restarts; and the brake names the driven ports."""
    settings = {}
    for line in (ROOT / "systemd" / "robot-client.service").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "main"
    assert 0 < float(settings["WatchdogSec"]) <= 10
    assert settings["Restart"] == "always" and settings["KillSignal"] == "SIGTERM"
    start, brake = settings["ExecStart"].split(), settings["ExecStopPost"].split()
    assert brake[:3] == ["/usr/bin/python3", "-m", "robot_client"] and "--stop-motors" in brake
    for option in ("--left", "--right"):
        assert brake[brake.index(option) + 1] == start[start.index(option) + 1]


def test_a_reader_that_goes_away_ends_the_client_quietly():
    """`robot-client --dry-run | head -1`: head takes the start-up "stop" and leaves; the client's
    next line (its final stop) meets a closed pipe: no traceback, the shell's SIGPIPE status."""
    sock, endpoint = publisher()
    try:
        result = subprocess.run(f"{ev3_python()} -m robot_client --connect {endpoint} --dry-run --run-seconds 1"
                                " | head -1; echo \"exit=${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash",
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        sock.close()
    assert result.stdout.splitlines() == ["stop", "exit=141"], result
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


def test_missing_motors_are_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run([ev3_python(), "-m", "robot_client", "--sysfs-root", str(tmp_path / "empty")],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "no large motor on outB and outC" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "ssh")
    yield server
    server.close()


def test_end_to_end_through_an_ssh_tunnel(tmp_path, sshd):
    weights = jittering_person_weights(tmp_path / "right.weights")
    tree = FakeMotorTree(tmp_path / "sys")
    daemon = Daemon("--source", "synthetic", "--weights", weights, http=False).start()
    remote_port = int(daemon.pub.rsplit(":", 1)[1])
    client = start_client(*sshd.client_args, "--remote-port", remote_port, "--sysfs-root", tree.root,
                          "--timeout-ms", 300, "--allow-recorded", tmp_path=tmp_path)
    try:
        assert tree.wait_for(lambda: steering_right(tree), 60), (tree.log[-6:], (tmp_path / "client.log").read_text())
        time.sleep(0.5)
        assert steering_right(tree), tree.log[-6:]
        t_kill = time.monotonic()
        daemon.process.kill()  # the laptop dies: no goodbye message at all
        both_stopped = lambda: all(tree.first_time(port, "command", "stop", after=t_kill) for port in ("outB", "outC"))
        assert tree.wait_for(both_stopped, 2.0)
        assert tree.first_time("outB", "command", "stop", after=t_kill) - t_kill < 0.5
        assert tree.first_time("outC", "command", "stop", after=t_kill) - t_kill < 0.5
        assert client.poll() is None  # still there, waiting for the daemon to come back
    finally:
        stop_client(client)
        daemon.stop()
        tree.close()


def test_tunnel_death_is_noticed_and_repaired(tmp_path, sshd):
    sock, endpoint = publisher()
    port = int(endpoint.rsplit(":", 1)[1])
    client = start_client(*sshd.client_args, "--remote-port", port, "--dry-run", "--timeout-ms", 300,
                          tmp_path=tmp_path)
    log = tmp_path / "client.log"
    try:
        wait_until_following(client, log)  # the tunnel is up
        pid = int(re.search(r"ssh tunnel started \(pid (\d+)\)", log.read_text()).group(1))
        send_for(sock, 1.5)
        assert re.search(r"drive left=\+\d+\.\d% right=-\d+\.\d%", log.read_text())  # turning towards the person
        os.kill(pid, signal.SIGKILL)  # the ssh child dies silently
        deadline = time.monotonic() + 10
        while log.read_text().count("ssh tunnel started") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        text = log.read_text()
        assert "ssh tunnel died (exit -9" in text and text.count("ssh tunnel started") == 2
        assert "motors stopped: no fresh message" in text
        before = text.count("drive left=")
        send_for(sock, 3.0)  # messages flow again through the new tunnel
        assert log.read_text().count("drive left=") > before
    finally:
        stop_client(client)
        sock.close()


def test_killed_or_hung_up_client_leaves_motors_that_stop_by_themselves(tmp_path):
    """SIGKILL: no code runs, so every drive command must be a timed run the kernel ends itself.
    SIGHUP (the ssh session that started the client is gone): brake, like SIGTERM. The fake sysfs
    cannot time out, so the commands written are what is checked."""
    trees = {name: FakeMotorTree(tmp_path / name) for name in ("kill", "hup")}
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.2)
    datagrams, reading = [], threading.Event()

    def read_notifications():  # as systemd does: a queue nobody reads holds only 10 datagrams
        while not reading.is_set():
            try:
                datagrams.append(notify.recv(256))
            except socket.timeout:
                pass

    reader = threading.Thread(target=read_notifications, daemon=True)
    reader.start()
    sock, endpoint = publisher()
    common = ("--connect", endpoint, "--timeout-ms", 1000)
    clients = {"kill": start_client(*common, "--sysfs-root", trees["kill"].root, tmp_path=tmp_path, log_name="kill.log"),
               "hup": start_client(*common, "--sysfs-root", trees["hup"].root, tmp_path=tmp_path, log_name="hup.log",
                                   env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"})}
    try:
        for name, client in clients.items():
            wait_until_following(client, tmp_path / f"{name}.log")
        renewed = lambda: all(len(run_timed_commands(tree, port)) >= 5 for tree in trees.values() for port in ("outB", "outC"))
        seq, deadline = 0, time.monotonic() + 10  # the clients may take a while to start on a busy machine
        while not renewed() and time.monotonic() < deadline:
            seq = send_for(sock, 0.5, offset_x=0.6, seq=seq)  # a person on the right: drive commands, renewed
        for tree in trees.values():
            for port in ("outB", "outC"):
                assert len(run_timed_commands(tree, port)) >= 5, tree.log[-8:]  # renewed, not sent once
                assert tree.last(port, "time_sp") is not None
        t_signal = time.monotonic()
        clients["kill"].kill()
        clients["hup"].send_signal(signal.SIGHUP)
        assert clients["hup"].wait(5) == 0 and clients["kill"].wait(5) == -signal.SIGKILL
        hup, kill = trees["hup"], trees["kill"]
        assert hup.wait_for(lambda: all(hup.first_time(p, "command", "stop", after=t_signal) for p in ("outB", "outC")), 2)
        time.sleep(0.1)  # the recorder has seen everything the killed client wrote
        for port in ("outB", "outC"):
            assert kill.last(port, "command") == "run-timed", kill.log[-8:]
            assert int(kill.last(port, "time_sp")) <= MAX_TIME_SP_MS
        # the brick's unit then runs ExecStopPost=... --stop-motors
        result = subprocess.run([ev3_python(), "-m", "robot_client", "--stop-motors", "--sysfs-root", str(kill.root)],
                                cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert kill.wait_for(lambda: kill.last("outB", "command") == kill.last("outC", "command") == "stop", 2)
        # the loop told systemd it was ready, then fed the watchdog at a quarter of its 0.4 s period
        reading.set()
        reader.join()
        assert datagrams[0] == b"READY=1" and datagrams.count(b"WATCHDOG=1") >= 10, datagrams[:3]
    finally:
        for client in clients.values():
            stop_client(client)
        for tree in trees.values():
            tree.close()
        sock.close()
        notify.close()


def test_demo_daemon_is_followed_only_with_allow_demo(tmp_path):
    daemon = Daemon("--demo", http=False).start()
    blocked, allowed = FakeMotorTree(tmp_path / "blocked"), FakeMotorTree(tmp_path / "allowed")
    common = ("--connect", daemon.pub, "--timeout-ms", 1000)
    clients = [start_client(*common, "--sysfs-root", blocked.root, tmp_path=tmp_path, log_name="blocked.log"),
               start_client(*common, "--sysfs-root", allowed.root, "--allow-demo", tmp_path=tmp_path,
                            log_name="allowed.log"),
               start_client(*common, "--dry-run", tmp_path=tmp_path, log_name="dry.log")]
    try:
        # the planted person is one to drive towards: --allow-demo does
        assert allowed.wait_for(lambda: len(run_timed_commands(allowed, "outB")) >= 3, 60), \
            (tmp_path / "allowed.log").read_text()
        time.sleep(1.0)
        assert run_timed_commands(blocked, "outB") == run_timed_commands(blocked, "outC") == []
        assert blocked.last("outB", "command") == blocked.last("outC", "command") == "stop"
        assert "daemon runs --demo" in (tmp_path / "blocked.log").read_text()
        assert "drive left=" in (tmp_path / "dry.log").read_text()  # --dry-run still shows what it would do
        assert all(client.poll() is None for client in clients)
    finally:
        for client in clients:
            stop_client(client)
        daemon.stop()
        blocked.close()
        allowed.close()


def test_backlog_after_a_stall_is_not_driven_on(tmp_path):
    tree = FakeMotorTree(tmp_path / "sys")
    sock, endpoint = publisher()
    client = start_client("--connect", endpoint, "--sysfs-root", tree.root, "--timeout-ms", 500, tmp_path=tmp_path)
    try:
        wait_until_following(client, tmp_path / "client.log")
        seq = send_for(sock, 1.0, found=False)  # nobody in view; the client learns the link's usual delay
        t_last = time.time()
        time.sleep(1.5)  # the Wi-Fi stalls; meanwhile the daemon publishes into TCP/SSH buffers ...
        # ... and the person walks in. The link comes back: the first half second of the stall
        # arrives at once, every message 1 to 1.5 s after it was published.
        t_burst = time.monotonic()
        sock.send(status_message())
        for i in range(15):
            sock.send(person_message(seq + i, offset_x=0.6, t_publish=t_last + (i + 1) / 30))
        seq += 15
        time.sleep(1.0)
        assert run_timed_commands(tree, "outB", after=t_burst) == [], tree.log[-8:]
        assert "ignored stale message" in (tmp_path / "client.log").read_text()
        t_fresh = time.monotonic()
        send_for(sock, 1.0, offset_x=0.6, seq=seq)  # current messages again: followed
        assert run_timed_commands(tree, "outB", after=t_fresh)
    finally:
        stop_client(client)
        tree.close()
        sock.close()


def test_tunnel_restart_delay_returns_to_the_minimum_after_health(tmp_path, sshd):
    sock, endpoint = publisher()
    port = int(endpoint.rsplit(":", 1)[1])
    client = start_client(*sshd.client_args, "--remote-port", port, "--dry-run", "--ssh-healthy-s", 2,
                          tmp_path=tmp_path)
    log = tmp_path / "client.log"

    def kill_ssh_number(n):
        deadline = time.monotonic() + 30
        while len(re.findall(r"ssh tunnel started \(pid (\d+)\)", log.read_text())) < n:
            assert time.monotonic() < deadline and client.poll() is None, log.read_text()
            time.sleep(0.05)
        os.kill(int(re.findall(r"ssh tunnel started \(pid (\d+)\)", log.read_text())[n - 1]), signal.SIGKILL)

    try:
        for n in (1, 2, 3):  # deaths in a row: the delay grows
            kill_ssh_number(n)
        deadline = time.monotonic() + 30
        while "restart delay back to 0.5 s" not in log.read_text():  # the 4th ssh stays up for 2 s
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        kill_ssh_number(4)
        deadline = time.monotonic() + 10
        while len(re.findall(r"restarting in ([\d.]+) s", log.read_text())) < 4:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert re.findall(r"restarting in ([\d.]+) s", log.read_text()) == ["0.5", "1.0", "2.0", "0.5"]
    finally:
        stop_client(client)
        sock.close()


def test_tunnel_key_line_of_the_example_allows_only_its_port(tmp_path):
    """systemd/ev3-authorized_keys.example, installed as docs/robot.md says (KEY replaced by the key),
    on a real sshd: the unit's -R forward is allowed; another -R port, a -L forward elsewhere and any
    command are not. The README shows the same line."""
    example = (ROOT / "systemd" / "ev3-authorized_keys.example").read_text()
    [line] = [line for line in example.splitlines() if line.strip() and not line.startswith("#")]
    options, placeholder = line.split(" ")
    assert options.startswith("restrict,") and placeholder == "KEY"
    assert line in (ROOT / "README.md").read_text()
    server = Sshd(tmp_path / "ssh")
    try:
        allowed, other = free_port(), free_port()
        key = (tmp_path / "ssh" / "client_key.pub").read_text().strip()
        installed = re.sub(r"KEY$", key, example, flags=re.MULTILINE).replace("5556", str(allowed))
        (tmp_path / "ssh" / "authorized_keys").write_text(installed)
        ssh = [require_program("ssh"), "-p", str(server.port), "-i", str(tmp_path / "ssh" / "client_key"),
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
               "-o", "LogLevel=ERROR", "-o", "ExitOnForwardFailure=yes"]
        unit = (ROOT / "systemd" / "robot-detector-tunnel.service").read_text()
        bind = re.search(r"-R (\S+):\$\{PORT\}:", unit).group(1)  # as the unit asks for it
        tunnel = subprocess.Popen([*ssh, "-N", "-R", f"{bind}:{allowed}:127.0.0.1:9", server.destination],
                                  stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", allowed)) == 0:
                        break
                assert tunnel.poll() is None and time.monotonic() < deadline, tunnel.stderr.read()
                time.sleep(0.05)
        finally:
            end_process(tunnel)
        refused = subprocess.run([*ssh, "-N", "-R", f"{bind}:{other}:127.0.0.1:9", server.destination],
                                 capture_output=True, text=True, timeout=15)
        assert refused.returncode != 0 and "remote port forwarding failed" in refused.stderr
        command = subprocess.run([*ssh, server.destination, "echo", "shell"], capture_output=True, text=True, timeout=15)
        assert command.returncode != 0 and "shell" not in command.stdout
        local = free_port()  # a -L forward to sshd itself, which greets every connection with its banner
        forward = subprocess.Popen([*ssh, "-N", "-L", f"127.0.0.1:{local}:127.0.0.1:{server.port}", server.destination],
                                   stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                with socket.socket() as probe:
                    probe.settimeout(5)
                    if probe.connect_ex(("127.0.0.1", local)) == 0:
                        try:
                            greeting = probe.recv(64)
                        except OSError:
                            greeting = b""
                        break
                assert forward.poll() is None and time.monotonic() < deadline, forward.stderr.read()
                time.sleep(0.05)
            assert not greeting.startswith(b"SSH-"), greeting  # the channel was refused: nothing came through
        finally:
            end_process(forward)
    finally:
        server.close()


def end_process(process):
    """SIGTERM, then SIGKILL if it is still there after 5 s (an ssh waiting on a refused channel can
    outlive SIGTERM on a loaded machine; the test has already asserted what it checks)."""
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

def jittering_person_weights(path, x=0.85, y=0.5, w=0.2, h=0.4):
    """Weights that report one person at (x, y, w, h) whose box moves by a fraction of a pixel with
    the picture, as a real detector's does (an identical box frame after frame is what a frozen
    camera gives, and the client stops on it)."""
    weights, biases = person_last_layer("yolov1-tiny", x, y, w, h)
    cell = int(y * 7) * 7 + int(x * 7)
    weights[1078 + cell * 8:1078 + cell * 8 + 4] = np.random.default_rng(0).normal(0, 1e-4, (4, weights.shape[1]))
    write_weights(path, make_params("yolov1-tiny", 6, (weights, biases)))
    return path


@pytest.fixture
def follower_on_tree(tmp_path):
    """A scripted publisher and the real client on a fake motor tree: (sock, tree, client, log path)."""
    tree = FakeMotorTree(tmp_path / "sys")
    sock, endpoint = publisher()
    started = []

    def start(*args):
        client = start_client("--connect", endpoint, "--sysfs-root", tree.root, "--timeout-ms", 300, *args,
                              tmp_path=tmp_path)
        started.append(client)
        wait_until_following(client, tmp_path / "client.log")
        return client

    yield sock, tree, start, tmp_path / "client.log"
    for client in started:
        stop_client(client)
    tree.close()
    sock.close()


def test_a_daemon_switch_is_not_driven_on_before_the_new_run_says_it_may(follower_on_tree):
    """Issue 17 items 1 and 4: a live daemon stops; a person message published before its
    `stopping` is delivered after it; then a --demo daemon takes the port and its person messages
    arrive 0.6 s before its first status. Before: 16 run-timed commands on the demo's person."""
    sock, tree, start, log = follower_on_tree
    client = start()
    seq = send_for(sock, 1.0, offset_x=0.6, run_id="a1")
    assert run_timed_commands(tree, "outB"), log.read_text()
    sock.send(status_message(state="stopping", run_id="a1"))
    time.sleep(0.1)
    t_stopping = time.monotonic()
    sock.send(person_message(seq, 0.6, run_id="a1"))  # overtaken by the status on the other socket
    time.sleep(0.2)
    send_for(sock, 0.6, offset_x=0.6, status=None, run_id="b2")  # the demo daemon: persons first
    send_for(sock, 1.0, offset_x=0.6, seq=20, status={"demo": True, "live": False}, run_id="b2")
    assert run_timed_commands(tree, "outB", after=t_stopping) == [], tree.log[-6:]
    text = log.read_text()
    assert "ignored person message #1 of a daemon run that is over" in text and "daemon runs --demo" in text
    assert "a new daemon run (run_id b2)" in text
    # an older daemon without run_id restarts: seq goes back; the new one's persons come first
    t_old = time.monotonic()
    seq = send_for(sock, 1.0, offset_x=0.6, seq=100)
    assert run_timed_commands(tree, "outB", after=t_old)
    t_restart = time.monotonic() + 0.05
    send_for(sock, 0.3, offset_x=0.6, seq=1, status=None)
    assert run_timed_commands(tree, "outB", after=t_restart) == []
    assert "seq went back from" in log.read_text() and client.poll() is None


@pytest.mark.parametrize("run_id", ["c3", None])
def test_restart_with_the_clock_2_s_back_drives_again_at_once(follower_on_tree, run_id):
    """Issue 17 item 3: the daemon is killed, a new one starts with seq from 0 and its clock 2 s
    behind. Before: every message refused as a backlog for the whole run (746 s at unit level)."""
    sock, tree, start, log = follower_on_tree
    start()
    ids = {"run_id": run_id} if run_id else {}
    send_for(sock, 1.5, offset_x=0.6, seq=500, **({"run_id": "old"} if run_id else {}))
    time.sleep(1.0)  # killed; the robot stops
    t_status = time.monotonic()
    send_for(sock, 3.0, offset_x=0.6, clock_s=-2.0, **ids)  # status first, as the daemon starts
    drives = run_timed_commands(tree, "outB", after=t_status)
    assert drives and drives[0] - t_status < 2.0, (drives[:1], log.read_text()[-2000:])
    assert drives[-1] > t_status + 2.5  # and keeps driving
    assert "stale" not in log.read_text()


def test_a_frozen_box_stops_the_wheels_while_they_turn(follower_on_tree):
    """Issue 17 item 2, the robot's own defence: a source that keeps delivering the same picture,
    so the daemon reports the same box with fresh times. Before: driven on for 8 s at the cap."""
    sock, tree, start, log = follower_on_tree
    start()
    t_start = time.monotonic()
    seq = send_for(sock, 2.5, offset_x=0.6, still=True)
    drives = run_timed_commands(tree, "outB", after=t_start)
    assert drives and drives[-1] - drives[0] < 1.4, drives  # stopped about 1 s after driving began
    assert tree.last("outB", "command") == "stop" and "stale data (a frozen camera?)" in log.read_text()
    t_alive = time.monotonic()
    send_for(sock, 1.0, offset_x=0.6, seq=seq)  # the picture moves again: followed again
    assert run_timed_commands(tree, "outB", after=t_alive)


def test_hostile_messages_neither_crash_nor_drive(follower_on_tree):
    """Issue 17 item 5: a deeply nested but valid JSON message raised RecursionError (exit 1, a
    restart loop under systemd). Nested: counted as malformed. Over 64 KiB: libzmq drops the
    connection (and never reconnects it by itself), the client sees a silence, stops, subscribes
    anew and follows again."""
    sock, tree, start, log = follower_on_tree
    client = start()
    seq = send_for(sock, 1.0, offset_x=0.6)
    sock.send(b"person " + b"[" * 20000 + b"]" * 20000)  # 40 KB, under the size limit
    time.sleep(0.15)  # alone: CONFLATE would rightly keep only the newest of a burst
    seq = send_for(sock, 0.5, offset_x=0.6, seq=seq)
    t_huge = time.monotonic()
    sock.send(b"person " + b"[" * 100000)  # the 100 KB
    seq = send_for(sock, 5.0, offset_x=0.6, seq=seq)  # the client subscribes anew after 3 s of silence
    text = log.read_text()
    assert client.poll() is None and "Traceback" not in text, text[-3000:]
    assert "nested deeper than 16 levels" in text
    assert tree.first_time("outB", "command", "stop", after=t_huge), "no stop after the connection was dropped"
    assert run_timed_commands(tree, "outB", after=time.monotonic() - 1.0)  # reconnected and following


def test_target_events_beep_and_a_held_target_is_not_driven_into(follower_on_tree, tmp_path):
    """Issue 18 item 3: with --beep, ev3dev2's Sound runs beep(1) when the target is found, lost, found
    again and changed (a recorder stands in for /usr/bin/beep); `held` (hidden behind a closer
    person) never drives forward."""
    sock, tree, start, log = follower_on_tree
    calls = tmp_path / "beeps"
    beep = tmp_path / "beep"
    beep.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
    beep.chmod(0o755)
    start("--beep", "--beep-program", beep)
    far = {"h": 0.3, "bottom": 0.6, "area": 0.03}  # feet 2.4 m away: the robot drives forward
    seq = send_for(sock, 0.5, offset_x=0.0, state="tracking", track_id=1, **far)
    t_held = time.monotonic()
    seq = send_for(sock, 0.5, offset_x=0.0, seq=seq, state="held", track_id=1, held=True, **far)
    seq = send_for(sock, 0.3, found=False, seq=seq, state="lost", track_id=None)
    seq = send_for(sock, 0.3, offset_x=0.0, seq=seq, state="tracking", track_id=1, **far)
    send_for(sock, 0.3, offset_x=0.0, seq=seq, state="tracking", track_id=2, **far)
    time.sleep(0.3)
    from robot_client.target import TONES
    assert calls.read_text().splitlines() == [TONES[e] for e in ("reacquired", "lost", "reacquired", "changed")]
    text = log.read_text()
    assert "target held (track 1)" in text and "target changed from track 1 to track 2" in text
    speeds = [(t, int(v)) for t, p, a, v in tree.log if p == "outB" and a == "speed_sp"]
    assert any(v > 0 for t, v in speeds if t < t_held), speeds  # tracking: forward
    held_until = t_held + 0.45
    assert all(v <= 0 for t, v in speeds if t_held + 0.1 < t < held_until), speeds  # held: no forward


def test_a_recording_is_driven_on_only_when_allowed(tmp_path):
    """Issue 17 item 10: `--source synthetic` (or a video file) with real weights published
    `demo: false`, and the client drove a real robot after people who are not there. The daemon
    now says `live: false` and a run_id on every message; the client drives only with
    --allow-recorded (or the older name --allow-demo)."""
    weights = jittering_person_weights(tmp_path / "right.weights")
    daemon = Daemon("--source", "synthetic", "--weights", weights, http=False)
    listener = Listener(daemon.pub)
    daemon.start()
    blocked, allowed = FakeMotorTree(tmp_path / "blocked"), FakeMotorTree(tmp_path / "allowed")
    common = ("--connect", daemon.pub, "--timeout-ms", 500)
    clients = [start_client(*common, "--sysfs-root", blocked.root, tmp_path=tmp_path, log_name="blocked.log"),
               start_client(*common, "--sysfs-root", allowed.root, "--allow-demo", tmp_path=tmp_path,
                            log_name="allowed.log")]
    try:
        assert allowed.wait_for(lambda: len(run_timed_commands(allowed, "outB")) >= 10, 60), \
            (tmp_path / "allowed.log").read_text()
        # the blocked client says why once a status of this run has reached it (a subscriber that
        # joined late may have missed the first and waits for the next heartbeat)
        assert blocked.wait_for(lambda: "the daemon's source is a recording" in (tmp_path / "blocked.log").read_text(),
                                10), (tmp_path / "blocked.log").read_text()
        assert run_timed_commands(blocked, "outB") == [] and blocked.last("outB", "command") == "stop"
        statuses, persons = listener.of("status"), listener.of("person")
        assert statuses and all(s["live"] is False and not s["demo"] for s in statuses)
        run_ids = {m["run_id"] for m in statuses + persons + listener.of("detections")}
        assert len(run_ids) == 1 and re.fullmatch(r"[0-9a-f]{16}", run_ids.pop())
        boxes = [(m["x"], m["y"], m["w"], m["h"]) for m in persons if m["found"]]
        assert len(set(boxes)) > 1  # the weights' box moves with the picture, as a real detector's does
    finally:
        for client in clients:
            stop_client(client)
        daemon.stop()
        listener.close()
        blocked.close()
        allowed.close()


@pytest.mark.parametrize("option, refused, accepted", [
    ("--turn-gain", ["nan", "-30", "inf", "0", "100.5"], ["0.1", "100"]),
    ("--timeout-ms", ["3600000", "1001", "49", "nan", "0"], ["50", "1000"]),
    ("--max-speed", ["0", "100.1", "nan"], ["0.5", "100"]),
    ("--distance", ["0.19", "10.5", "inf"], ["0.2", "10"]),
    ("--camera-height", ["0", "3", "-1"], ["0.01", "2.99"]),
    ("--hfov", ["0.9", "170.1"], ["1", "170"]),
    ("--vfov", ["0.9", "170.1"], ["1", "170"]),
    ("--target-area", ["0", "1", "nan"], ["0.001", "0.999"]),
    ("--drive-gain", ["0", "5.1", "-1"], ["0.01", "5"]),
    ("--ssh-healthy-s", ["-1", "3601", "nan"], ["0", "3600"]),
    ("--ssh-port", ["0", "65536", "22.5"], ["1", "65535"]),
    ("--remote-port", ["0", "65536"], ["1", "65535"]),
    ("--run-seconds", ["0", "-1", "inf", "31536001"], ["0.01", "31536000"]),
    ("--left", ["outE", "outb", "B"], ["outA", "outD"]),
    ("--connect", ["inproc://x", "garbage", "tcp://127.0.0.1", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:0",
                   "tcp://[::1]:65536"], ["tcp://127.0.0.1:5556", "ipc:///run/r.sock", "tcp://[::1]:5556",
                                          "tcp://127.0.0.1:1", "tcp://127.0.0.1:65535"]),
    ("--ssh", ["-oProxyCommand=x@h", "nohost", "a b@c"], ["robot@laptop.local"]),
    ("--ssh-option", ["-p 22", "=x"], ["ServerAliveInterval=5"]),
])
def test_every_option_has_a_range_refused_on_both_sides(capsys, option, refused, accepted):
    """Issue 17 item 6: --turn-gain nan, -30 (steers away from the person) and inf were accepted;
    --timeout-ms had no upper bound (3600000 drove on for as long as the client ran). Each
    refusal: exit 2 and one line saying what was expected and what was found."""
    from robot_client.client import build_follower, parse_args
    for value in refused:
        with pytest.raises(SystemExit) as exit_info:
            parse_args([f"{option}={value}"] + (["--right", "outB"] if option == "--left" else []))
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.count("\n") == 1 and "robot-client: error:" in error, error
        assert option in error and repr(value) in error and "expected" in error, error
    for value in accepted:
        args = parse_args([option, value] + (["--right", "outB"] if option == "--left" else []))
        build_follower(args)


def test_option_errors_are_one_line_from_the_real_command(tmp_path):
    for argv, words in ((["--turn-gain", "nan"], "--turn-gain: expected a number in (0, 100] %, found 'nan'"),
                        (["--timeout-ms", "3600000"], "--timeout-ms: expected an integer in [50, 1000] ms"),
                        (["--left", "outC"], "--left and --right are both outC"),
                        (["--connect", "tcp://127.0.0.1:99999"], "PORT in 1 to 65535, found 'tcp://127.0.0.1:99999'")):
        result = subprocess.run([ev3_python(), "-m", "robot_client", "--dry-run", *argv], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and words in result.stderr, result.stderr


def test_a_demo_daemon_taking_over_the_port_is_not_driven_on(tmp_path):
    """Issue 17 item 1 with real daemons: a live one (a network camera) is followed and stopped
    (SIGTERM: `stopping`); `run --demo` then binds the same endpoint. Before: the client drove on
    the demo's person until the demo's first status reached it."""
    camera = MjpegServer(fps=15).start()
    weights = jittering_person_weights(tmp_path / "right.weights")
    live = Daemon("--source", camera.url, "--weights", weights, http=False).start()
    demo = Daemon("--demo", http=False)
    demo.args[demo.args.index(demo.pub)] = demo.pub = live.pub
    tree = FakeMotorTree(tmp_path / "sys")
    client = start_client("--connect", live.pub, "--sysfs-root", tree.root, "--timeout-ms", 500, tmp_path=tmp_path)
    try:
        assert tree.wait_for(lambda: len(run_timed_commands(tree, "outB")) >= 5, 60), (tmp_path / "client.log").read_text()
        live.stop()
        t_demo = time.monotonic()
        demo.start()
        listener = Listener(demo.pub, (protocol.PERSON,))
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 30, 60)
            time.sleep(1.0)
        finally:
            listener.close()
        assert run_timed_commands(tree, "outB", after=t_demo) == [], tree.log[-6:]
        text = (tmp_path / "client.log").read_text()
        assert "a new daemon run (run_id" in text and "daemon runs --demo" in text and client.poll() is None
    finally:
        stop_client(client)
        demo.stop()
        live.stop()
        camera.stop()
        tree.close()
