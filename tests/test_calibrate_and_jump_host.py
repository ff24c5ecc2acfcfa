"""`robot-client --calibrate` against a real ZeroMQ publisher, directly and through a jump host
(two real sshd on loopback: the brick reaches the daemon's PC through another machine)."""
import subprocess
import threading
import time

import pytest

from conftest import ROOT
from ev3_helpers import Sshd, ev3_python, publisher
from robot_client import protocol
from robot_client.controller import Camera

SSH_QUIET = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]


def keep_publishing(sock, distance_m, found=True):
    """Publish a person `distance_m` away (head cut off at the top, as at 1-3 m) at 30 Hz until stopped."""
    stop = threading.Event()
    bottom = Camera().box_bottom(distance_m)

    def loop():
        seq = 0
        while not stop.is_set():
            message = {"v": 1, "seq": seq, "t_capture": time.time(), "t_publish": time.time(), "frame_w": 640,
                       "frame_h": 480, "found": found}
            if found:
                message.update(x=0.5, y=bottom / 2, w=0.25, h=bottom, area=0.25 * bottom, offset_x=0.0,
                               confidence=0.9)
            else:
                message.update(dict.fromkeys(protocol.PERSON_TARGET_FIELDS))
            sock.send(protocol.encode("person", message))
            seq += 1
            time.sleep(1 / 30)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return stop, thread


def calibrate(*args, seconds=4):
    return subprocess.run([ev3_python(), "-m", "robot_client", "--calibrate", "--run-seconds", str(seconds),
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_calibrate_prints_the_distance_the_person_stands_at():
    sock, endpoint = publisher()
    stop, thread = keep_publishing(sock, 1.37)
    try:
        result = calibrate("--connect", endpoint)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "robot-client --distance 1.37 " in result.stdout
        assert "--target-area {:.3f}".format(0.25 * Camera().box_bottom(1.37)) in result.stdout
        # another camera height: the same picture means another distance (0.3 / 0.2 of it)
        taller = calibrate("--connect", endpoint, "--camera-height", "0.3")
        assert "robot-client --distance 2.06 " in taller.stdout, taller.stdout
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_calibrate_says_what_is_wrong():
    sock, endpoint = publisher()
    silent = calibrate("--connect", endpoint, seconds=1.5)
    assert silent.returncode == 1 and "no person message from " + endpoint in silent.stdout
    stop, thread = keep_publishing(sock, 1.0, found=False)
    try:
        nobody = calibrate("--connect", endpoint, seconds=1.5)
        assert nobody.returncode == 1 and "saw a person in only 0" in nobody.stdout, nobody.stdout
    finally:
        stop.set()
        thread.join()
    stop, thread = keep_publishing(sock, 0.4)  # feet below the frame
    try:
        close = calibrate("--connect", endpoint, seconds=1.5)
        assert close.returncode == 1 and "feet are below the frame" in close.stdout, close.stdout
    finally:
        stop.set()
        thread.join()
        sock.close()


@pytest.fixture
def two_sshd(tmp_path):
    jump, pc = Sshd(tmp_path / "jump"), Sshd(tmp_path / "pc")
    yield jump, pc
    jump.close()
    pc.close()


def test_reaching_the_daemon_through_a_jump_host(tmp_path, two_sshd):
    """brick -> ssh to the jump host -> ssh -W to the PC -> the tunnel's -L to the daemon's port."""
    jump, pc = two_sshd
    sock, endpoint = publisher()
    daemon_port = int(endpoint.rsplit(":", 1)[1])
    hop = " ".join(["ssh", "-i", str(tmp_path / "jump" / "client_key"), "-p", str(jump.port),
                    *SSH_QUIET, "-W", "%h:%p", jump.destination])
    through_jump = ["--ssh", pc.destination, "--ssh-port", pc.port, "--ssh-key", tmp_path / "pc" / "client_key",
                    "--ssh-option", "ProxyCommand=" + hop, "--ssh-option", "StrictHostKeyChecking=no",
                    "--ssh-option", "UserKnownHostsFile=/dev/null", "--remote-port", daemon_port]
    stop, thread = keep_publishing(sock, 1.5)
    try:
        result = calibrate(*through_jump, seconds=8)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "robot-client --distance 1.50 " in result.stdout
        jump.close()  # without the jump host there is no way through: the same command fails
        cut = calibrate(*through_jump, seconds=2)
        assert cut.returncode == 1 and "no person message" in cut.stdout, cut.stdout + cut.stderr
    finally:
        stop.set()
        thread.join()
        sock.close()
