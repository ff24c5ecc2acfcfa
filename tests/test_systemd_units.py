"""The PC's systemd units (issue 17 item 11): the tunnel runs as its own user with the brick's key as a
credential, sandboxed at least like the daemon; and its forward, run exactly as the unit writes it
through a real sshd, reaches the daemon's ipc:// socket, also across a daemon restart."""
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, require_program
from daemon_helpers import Daemon, Listener, free_port
from darknet_files import make_params, person_last_layer, write_weights
from ev3_helpers import Sshd

DAEMON_UNIT = ROOT / "systemd" / "robot-detector.service"
TUNNEL_UNIT = ROOT / "systemd" / "robot-detector-tunnel.service"
DEVICE_KEYS = {"DevicePolicy", "DeviceAllow"}  # the daemon admits cameras; the tunnel has no devices at all


def service_settings(path):
    """[Service] key -> list of values, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    section, settings = None, {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def sandboxing_keys(path):
    """The settings after the unit's "# Sandboxing" comment."""
    tail = path.read_text().split("# Sandboxing", 1)[1].split("[Install]", 1)[0]
    return {line.split("=", 1)[0] for line in tail.splitlines()[1:] if "=" in line and not line.startswith("#")}


def test_the_tunnel_runs_as_its_own_user_with_the_key_as_a_credential():
    daemon, tunnel = service_settings(DAEMON_UNIT), service_settings(TUNNEL_UNIT)
    assert tunnel["User"] != daemon["User"] and tunnel["User"] != ["root"] and "DynamicUser" not in daemon
    assert tunnel["Group"] != daemon["Group"]
    assert tunnel["LoadCredential"] == ["ev3_key:/etc/robot-detector/ev3_key"]
    exec_start = tunnel["ExecStart"][0]
    assert "-i ${CREDENTIALS_DIRECTORY}/ev3_key" in exec_start and "/etc/robot-detector/ev3_key" not in exec_start
    # the daemon's socket directory is its group's alone, and the tunnel is in that group
    assert daemon["RuntimeDirectory"] == ["robot-detector"] and daemon["RuntimeDirectoryMode"] == ["0750"]
    assert tunnel["SupplementaryGroups"] == daemon["Group"]


def test_the_tunnel_has_every_sandboxing_setting_of_the_daemon():
    daemon, tunnel = service_settings(DAEMON_UNIT), service_settings(TUNNEL_UNIT)
    keys = sandboxing_keys(DAEMON_UNIT) - DEVICE_KEYS
    assert {"CapabilityBoundingSet", "ProtectKernelLogs", "RestrictNamespaces"} <= keys
    assert {key: tunnel.get(key) for key in keys} == {key: daemon[key] for key in keys}
    assert tunnel["PrivateDevices"] == ["yes"]


def test_systemd_analyze_rates_the_tunnel_at_least_as_safe_as_the_daemon(tmp_path):
    analyze = require_program("systemd-analyze")
    for unit in (DAEMON_UNIT, TUNNEL_UNIT):
        text = unit.read_text().replace("/opt/robot-detector/bin", str(Path(sys.executable).parent))
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / TUNNEL_UNIT.name)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr

    def exposure(name):
        result = subprocess.run([analyze, "security", "--offline=true", str(tmp_path / name)],
                                capture_output=True, text=True, timeout=60)
        match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout + result.stderr)
        assert match, result.stdout + result.stderr
        return float(match.group(1)), result.stdout
    daemon, _ = exposure(DAEMON_UNIT.name)
    tunnel, report = exposure(TUNNEL_UNIT.name)
    assert tunnel <= min(daemon, 2.0), (tunnel, daemon, report)
    for setting in ("CapabilityBoundingSet=~CAP_SYS_ADMIN", "ProtectKernelLogs=", "RestrictNamespaces=~user",
                    "NoNewPrivileges=", "User=/DynamicUser="):
        assert re.search(r"✓ " + re.escape(setting), report), (setting, report)


def unit_command(env):
    """The tunnel unit's ExecStart as systemd would run it, with `env` for its ${VARIABLES}."""
    command = service_settings(TUNNEL_UNIT)["ExecStart"][0]
    return shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], command))


def wait_for_persons(listener, count, timeout=60):
    start = len(listener.of("person"))
    return listener.wait_for(lambda l: len(l.of("person")) >= start + count, timeout)


def test_the_tunnel_unit_forwards_the_brick_port_to_the_daemons_ipc_socket(tmp_path):
    """The unit's own ssh command line against a real sshd (standing in for the brick): a subscriber on
    the "brick's" 127.0.0.1:PORT gets the messages of a daemon publishing on ipc://, whose socket file
    is 0660 whatever the umask; a restarted daemon is reached again through the same tunnel."""
    server = Sshd(tmp_path / "ssh")
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    shutil.copy(tmp_path / "ssh" / "client_key", credentials / "ev3_key")
    os.chmod(credentials / "ev3_key", 0o600)
    host_key = (tmp_path / "ssh" / "host_key.pub").read_text().split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {host_key[0]} {host_key[1]}\n")
    socket_path = tmp_path / "run" / "pub.sock"
    socket_path.parent.mkdir(mode=0o750)
    port = free_port()
    command = unit_command({"CREDENTIALS_DIRECTORY": str(credentials), "PORT": str(port), "SOCKET": str(socket_path),
                            "BRICK": f"ssh://{server.destination}:{server.port}"})
    command = [require_program("ssh") if part == "/usr/bin/ssh" else part.replace(
        "/etc/robot-detector/known_hosts", str(known_hosts)) for part in command]
    weights = tmp_path / "p.weights"
    write_weights(weights, make_params("yolov1-tiny", 1, person_last_layer("yolov1-tiny", .5, .5, .2, .2)))

    def start_daemon():
        old_umask = os.umask(0o077)  # the unit's UMask: the publisher must open the socket to the group itself
        try:
            return Daemon("--source", "synthetic", "--weights", weights, "--pub", f"ipc://{socket_path}",
                          http=False).start()
        finally:
            os.umask(old_umask)

    daemon = start_daemon()
    tunnel = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    listener = Listener(f"tcp://127.0.0.1:{port}", topics=["person"])
    try:
        assert wait_for_persons(listener, 5), (tunnel.poll(), daemon.process.poll())
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
        daemon.process.kill()  # a crash: systemd restarts it, the tunnel stays as it is
        daemon.wait(10)
        daemon = start_daemon()
        assert wait_for_persons(listener, 5), (tunnel.poll(), daemon.process.poll())
        assert tunnel.poll() is None
    finally:
        listener.close()
        daemon.stop()
        tunnel.terminate()
        tunnel.wait(10)
        server.close()


@pytest.mark.parametrize("unit", [DAEMON_UNIT, TUNNEL_UNIT])
def test_the_example_config_and_the_units_name_the_same_socket(unit):
    config = (ROOT / "systemd" / "config.example.toml").read_text()
    socket_path = re.search(r'^pub = "ipc://(\S+)"', config, re.MULTILINE).group(1)
    if unit == TUNNEL_UNIT:
        assert f"SOCKET={socket_path}" in service_settings(unit)["Environment"][0]
    else:
        assert socket_path.startswith("/run/" + service_settings(unit)["RuntimeDirectory"][0] + "/")
