"""systemd's notification protocol (READY=1, WATCHDOG=1, STATUS=...): one datagram to $NOTIFY_SOCKET,
stdlib only (no libsystemd on the brick). Does nothing when systemd did not start the process.
The daemon on the PC uses it too, as it uses protocol.py: one implementation for both units."""
import logging
import os
import socket

log = logging.getLogger("robot_client.sdnotify")


class Notifier(object):
    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        # a leading '@' names a socket in the abstract namespace
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        # ping at a quarter of the period: two slow loops on the brick are not yet a missed ping
        self.watchdog_interval_s = int(usec) / 4e6 if usec.isdigit() and int(usec) > 0 else None
        self._last_ping = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.address else None

    def notify(self, *lines):
        """One datagram; several lines (e.g. READY=1 and STATUS=...) are one state change."""
        if self._sock is None:
            return
        try:
            # never blocks: a full queue (a stalled service manager) must not stall the loop that
            # drives the motors; a missed WATCHDOG=1 is what a stalled manager would act on anyway
            self._sock.sendto("\n".join(lines).encode("utf-8"), socket.MSG_DONTWAIT, self.address)
        except BlockingIOError:
            log.debug("sd_notify queue at %s is full; dropped %r", self.address, lines)
        except OSError as error:
            log.warning("sd_notify to %s failed: %s", self.address, error)

    def watchdog(self, now):
        """Call from the loop: a loop that hangs stops pinging, and systemd restarts the client."""
        if self.watchdog_interval_s is None:
            return
        if self._last_ping is None or now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.notify("WATCHDOG=1")

    def close(self):
        if self._sock is not None:
            self._sock.close()
