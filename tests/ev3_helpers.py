"""Stand-ins for what cannot exist here: the EV3's sysfs motor tree (driven by the real ev3dev2
library) and a second machine (a real sshd on loopback)."""
import getpass
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from conftest import ROOT, require_program
from daemon_helpers import free_port

MOTOR_FILES = {"driver_name": "lego-ev3-l-motor", "count_per_rot": "360", "max_speed": "1050"}
WRITABLE = ("speed_sp", "time_sp", "stop_action", "command")  # the order ev3dev2 writes them
COMMANDS = ("run-forever", "run-to-abs-pos", "run-to-rel-pos", "run-timed", "run-direct", "stop", "reset")


def newest_command(value):
    """ev3dev2 writes at offset 0 without truncating, so a command written over an unread longer
    one (e.g. "stop" over "reset" while starting up) leaves that one's tail: "stopt". The newest is
    the command the value starts with."""
    if value in COMMANDS:
        return value
    starts = [command for command in COMMANDS if value.startswith(command)]
    return max(starts, key=len) if starts else value


def ev3_python():
    """The brick stand-in's interpreter (.venv-ev3: Python 3.6 + pyzmq 16), else this one."""
    candidate = ROOT / ".venv-ev3" / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    if os.environ.get("CI"):
        pytest.fail(".venv-ev3 is missing: scripts/setup creates it")
    return sys.executable


class FakeMotorTree:
    """<root>/tacho-motor/motorN for each port, in the layout ev3dev2 reads. A recorder thread
    logs each value ev3dev2 writes and truncates the file, as real sysfs replaces values (a plain
    file would keep the tail of a longer old value)."""

    def __init__(self, root, ports=("outB", "outC")):
        self.root = Path(root)
        self.dirs = {}
        for index, port in enumerate(ports):
            folder = self.root / "tacho-motor" / f"motor{index}"
            folder.mkdir(parents=True)
            (folder / "address").write_text(f"ev3-ports:{port}\n")
            for name, value in MOTOR_FILES.items():
                (folder / name).write_text(value + "\n")
            for name in ("address", *MOTOR_FILES):
                os.chmod(folder / name, 0o444)
            for name in WRITABLE:
                (folder / name).write_text("")
                os.chmod(folder / name, 0o664)  # ev3dev2 opens r+ when the group may read and write
            self.dirs[port] = folder
        self.log = []  # (monotonic time, port, attribute, value)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._record, daemon=True)
        self._thread.start()

    def _record(self):
        while not self._stop.is_set():
            for port, folder in self.dirs.items():
                for name in WRITABLE:
                    # os-level calls: the moment between reading and truncating, where a write of
                    # the client would be lost or overlaid, stays a few microseconds
                    fd = os.open(folder / name, os.O_RDWR)
                    try:
                        value = os.read(fd, 64)
                        if value:
                            os.ftruncate(fd, 0)
                    finally:
                        os.close(fd)
                    value = value.decode().strip()
                    if value:
                        value = newest_command(value) if name == "command" else value
                        self.log.append((time.monotonic(), port, name, value))
            time.sleep(0.002)

    def last(self, port, attribute):
        values = [v for _, p, a, v in self.log if p == port and a == attribute]
        return values[-1] if values else None

    def wait_for(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.005)
        return False

    def first_time(self, port, attribute, value, after=0.0):
        for t, p, a, v in list(self.log):
            if t >= after and p == port and a == attribute and v == value:
                return t
        return None

    def close(self):
        self._stop.set()
        self._thread.join()


def start_client(*args, tmp_path=None, log_name="client.log", env=None):
    """The real robot client, as on the brick (python -m robot_client), logging to a file."""
    log = open(tmp_path / log_name, "w") if tmp_path else subprocess.DEVNULL
    return subprocess.Popen([ev3_python(), "-m", "robot_client", *map(str, args)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


STARTED = "following the person published at"  # client.py logs it just before subscribing


def wait_until_following(process, log_path, timeout=30):
    """Wait until the client started by `start_client` has its motors and is about to subscribe,
    then long enough for the subscription to reach the publisher. Start-up takes from under a
    second to several on a busy machine (as on a brick): a fixed sleep would race it."""
    deadline = time.monotonic() + timeout
    while STARTED not in Path(log_path).read_text():
        assert process.poll() is None, Path(log_path).read_text()
        assert time.monotonic() < deadline, "client not started in %d s: %s" % (timeout, Path(log_path).read_text())
        time.sleep(0.05)
    time.sleep(0.3)


def stop_client(process, timeout=5):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Sshd:
    """A real OpenSSH server on 127.0.0.1, accepting one generated key for the current user."""

    def __init__(self, folder):
        sshd = require_program("sshd")
        keygen = require_program("ssh-keygen")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        self.port = free_port()
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "StrictModes no", "UsePAM no", "AllowTcpForwarding yes", "PermitRootLogin prohibit-password",
            "LogLevel ERROR", ""]))
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        self.process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=open(folder / "sshd.log", "w"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("sshd did not start: " + (folder / "sshd.log").read_text())
        self.destination = f"{getpass.getuser()}@127.0.0.1"
        self.client_args = ["--ssh", self.destination, "--ssh-port", self.port, "--ssh-key", folder / "client_key",
                            "--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null",
                            "--ssh-option", "LogLevel=ERROR"]

    def close(self):
        self.process.terminate()
        self.process.wait(5)


def publisher():
    """A test-side PUB socket on a free loopback port: (socket, endpoint)."""
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, f"tcp://127.0.0.1:{port}"
