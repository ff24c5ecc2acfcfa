"""A supervised SSH tunnel: `ssh -N -L` kept alive, its deaths noticed, reported and repaired.

pyzmq's own zmq.ssh helpers start `ssh ... sleep 60` through pexpect, and the ssh child can die
silently while the call reports success; here the ssh process is ours, watched on every loop.
"""
import logging
import socket
import subprocess
import tempfile
import time

log = logging.getLogger("robot_client.tunnel")

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
# An ssh that stayed up this long was healthy: its next death restarts after BACKOFF_S[0] again.
# Longer than ConnectTimeout + ServerAliveInterval * CountMax below, so that an ssh still trying to
# connect, or on a link already dead, does not count as healthy.
HEALTHY_S = 30.0


def free_local_port():
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


class SshTunnel(object):
    """Forwards 127.0.0.1:`local_port` on this machine to 127.0.0.1:`remote_port` on the far side
    of `destination` (USER@HOST), where the daemon publishes."""

    def __init__(self, destination, remote_port, ssh_port=None, identity=None, options=(), local_port=None,
                 ssh_binary="ssh", healthy_s=HEALTHY_S):
        self.local_port = local_port or free_local_port()
        self.command = [ssh_binary, "-N", "-L", "127.0.0.1:{}:127.0.0.1:{}".format(self.local_port, remote_port),
                        "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5",
                        "-o", "ServerAliveCountMax=2", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if ssh_port:
            self.command += ["-p", str(ssh_port)]
        if identity:
            self.command += ["-i", identity]
        for option in options:
            self.command += ["-o", option]
        self.command.append(destination)
        self.process = None
        self.restarts = 0
        self.failures = 0         # deaths since the tunnel was last healthy: the backoff step
        self.healthy_s = healthy_s
        self._stderr = None
        self._retry_at = 0.0
        self._started_at = None

    @property
    def endpoint(self):
        return "tcp://127.0.0.1:{}".format(self.local_port)

    def start(self):
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=self._stderr)
        self._started_at = time.monotonic()
        log.info("ssh tunnel started (pid %d): %s", self.process.pid, " ".join(self.command))

    def _why(self):
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no message from ssh"

    def check(self, now):
        """Call often. Returns True while the ssh process is alive; restarts it with backoff."""
        if self.process is not None and self.process.poll() is None:
            if self.failures and now - self._started_at >= self.healthy_s:
                log.info("ssh tunnel up for %.0f s: restart delay back to %.1f s", now - self._started_at,
                         BACKOFF_S[0])
                self.failures = 0
            return True
        if self.process is not None:
            code = self.process.returncode
            delay = BACKOFF_S[min(self.failures, len(BACKOFF_S) - 1)]
            log.warning("ssh tunnel died (exit %s: %s); restarting in %.1f s", code, self._why(), delay)
            self._stderr.close()
            self.process = None
            self.failures += 1
            self._retry_at = now + delay
            return False
        if now >= self._retry_at:
            self.restarts += 1
            self.start()
        return False

    def wait_ready(self, timeout_s=15.0):
        """True once the local end accepts connections (the forward is up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            sock = socket.socket()
            try:
                sock.settimeout(0.2)
                sock.connect(("127.0.0.1", self.local_port))
                return True
            except (OSError, socket.timeout):
                time.sleep(0.1)
            finally:
                sock.close()
        return False

    def close(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._stderr is not None:
            self._stderr.close()
