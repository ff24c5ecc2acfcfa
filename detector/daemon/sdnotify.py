"""systemd's notification protocol (sd_notify) without libsystemd: one datagram per message to
the unix socket named in $NOTIFY_SOCKET. Does nothing when not run by systemd."""
from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.address = None
        if address:
            # A leading '@' names a socket in the abstract namespace.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        # Ping at a quarter of the watchdog period (systemd recommends at least half).
        self.watchdog_interval_s = int(usec) / 4e6 if usec.isdigit() and int(usec) > 0 else 1.0
        self._last_watchdog = 0.0

    def notify(self, *lines: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as error:
            log.warning("sd_notify to %s failed: %s", self.address, error)

    def watchdog(self) -> None:
        now = time.monotonic()
        if now - self._last_watchdog >= self.watchdog_interval_s:
            self._last_watchdog = now
            self.notify("WATCHDOG=1")
