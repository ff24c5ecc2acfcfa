"""The robot client for real: the ev3dev2 library on a fake sysfs tree, ZeroMQ on loopback, a real
sshd for the tunnel, and the real daemon at the other end."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import ROOT, require_program
from daemon_helpers import Daemon
from darknet_files import make_params, person_last_layer, write_weights
from ev3_helpers import FakeMotorTree, Sshd, ev3_python, publisher, start_client, stop_client
from robot_client import protocol


def person_message(seq, offset_x=0.5, area=0.15, found=True):
    x = (offset_x + 1) / 2
    message = {"v": 1, "seq": seq, "t_capture": time.time(), "t_publish": time.time(), "frame_w": 640,
               "frame_h": 480, "found": found}
    if found:
        message.update(x=x, y=0.5, w=area / 0.5, h=0.5, area=area, offset_x=offset_x, confidence=0.9)
    else:
        message.update(dict.fromkeys(protocol.PERSON_TARGET_FIELDS))
    return protocol.encode("person", message)


def send_for(sock, seconds, offset_x=0.5, rate_hz=30):
    end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < end:
        sock.send(person_message(seq, offset_x))
        seq += 1
        time.sleep(1 / rate_hz)


def turning_right(tree):
    left, right = tree.last("outB", "speed_sp"), tree.last("outC", "speed_sp")
    return (left is not None and right is not None and int(left) > 0 > int(right)
            and tree.last("outB", "command") == "run-forever")


def steering_right(tree):
    """Following a person on the right: the left wheel faster (the daemon's synthetic person stands
    still while the robot believes it drives, so the controller may also drive forward)."""
    left, right = tree.last("outB", "speed_sp"), tree.last("outC", "speed_sp")
    return (left is not None and right is not None and int(left) > int(right)
            and tree.last("outB", "command") == "run-forever")


def test_vermin_says_python_3_5():
    vermin = require_program("vermin") if not (ROOT / ".venv/bin/vermin").exists() else str(ROOT / ".venv/bin/vermin")
    result = subprocess.run([vermin, "-t=3.5-", "--no-tips", "--violations", str(ROOT / "robot_client")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted(p.name for p in (ROOT / "robot_client").glob("*.py"))
    assert len(files) >= 6 and f"Analyzing {len(files)} files" in result.stdout


def test_client_parses_as_python_3_5_and_uses_only_stdlib_and_zmq():
    import ast
    allowed = {"argparse", "json", "logging", "math", "signal", "socket", "subprocess", "sys", "tempfile", "time",
               "zmq", "ev3dev2", "ev3dev2.motor"}
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
        time.sleep(1.0)  # the client starts (slowly, as on a brick) and subscribes
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
    client = start_client("--connect", endpoint, "--sysfs-root", tree.root, "--timeout-ms", 5000, tmp_path=tmp_path)
    try:
        time.sleep(1.0)
        send_for(sock, 1.0, offset_x=-0.6)
        assert tree.last("outC", "command") == "run-forever"
        t_term = time.monotonic()
        client.send_signal(signal.SIGTERM)
        assert client.wait(5) == 0
        assert tree.wait_for(lambda: tree.first_time("outC", "command", "stop", after=t_term), 1.0)
    finally:
        stop_client(client)
        tree.close()
        sock.close()


def test_malformed_messages_are_counted_and_ignored(tmp_path):
    sock, endpoint = publisher()
    client = subprocess.Popen([ev3_python(), "-m", "robot_client", "--connect", endpoint, "--dry-run",
                               "--run-seconds", "5", "--log-level", "info"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.2)
    bad = [b"person ", b"person {not json", b"person " + '{"v":1}'.encode(), b"person [1,2]",
           b"person \xff\xfe", protocol.encode("person", {"v": 2})[:-1] + b"}",
           b'person {"v":1,"seq":"x"}', b"status " + b'{"v":1,"state":"dancing"}']
    good = person_message(1, offset_x=0.7)
    for frame in bad:  # spaced out: CONFLATE would rightly keep only the newest of a burst
        sock.send(frame)
        time.sleep(0.15)
    for _ in range(10):
        sock.send(good)
        time.sleep(0.03)
    output, _ = client.communicate(timeout=15)
    sock.close()
    assert client.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"drive left=\+\d+\.\d% right=-\d+\.\d%", output)  # still following after the garbage
    done = re.search(r"done: (\d+) messages, (\d+) malformed", output)
    assert done and int(done.group(2)) == len(bad) and int(done.group(1)) >= 1, output


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
    weights = tmp_path / "right.weights"
    write_weights(weights, make_params("yolov1-tiny", 6, person_last_layer("yolov1-tiny", 0.85, 0.5, 0.2, 0.4)))
    tree = FakeMotorTree(tmp_path / "sys")
    daemon = Daemon("--source", "synthetic", "--weights", weights, http=False).start()
    remote_port = int(daemon.pub.rsplit(":", 1)[1])
    client = start_client(*sshd.client_args, "--remote-port", remote_port, "--sysfs-root", tree.root,
                          "--timeout-ms", 300, tmp_path=tmp_path)
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
        deadline = time.monotonic() + 30
        while "ssh tunnel started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int(re.search(r"ssh tunnel started \(pid (\d+)\)", log.read_text()).group(1))
        send_for(sock, 1.5)
        assert "drive left=+15.0% right=-15.0%" in log.read_text()
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
