"""Headless Chromium driven through the DevTools protocol, as a person at the page would act:
real mouse events at page coordinates (Input.dispatchMouseEvent), the page's own scripts running.

The protocol is spoken over `--remote-debugging-pipe` (JSON messages ended by a NUL byte, the
browser reading fd 3 and writing fd 4), so it needs neither a port nor a websocket library.
"""
import fcntl
import json
import os
import select
import subprocess
import time


class DevToolsError(Exception):
    pass


def _moved_above(fd, lowest):
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return moved


class Chromium:
    def __init__(self, chromium, profile_dir, size=(1000, 800)):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # above 4, so that putting one on fd 3 cannot overwrite the other before it is copied to fd 4
        to_browser_r, from_browser_w = (_moved_above(fd, 10) for fd in (to_browser_r, from_browser_w))
        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile_dir}",
                f"--window-size={size[0]},{size[1]}", "--remote-debugging-pipe", "about:blank"]
        # bash (dash takes one-digit descriptors only) puts the pipes where the browser expects them
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', *args],
            pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session = None

    def call(self, method, params=None, session=True, timeout=30):
        """The result of one protocol command (in the page's session unless `session` is False)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:  # events and other replies are not needed here
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                return reply["result"]

    def _receive(self, deadline):
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise DevToolsError("Chromium closed the DevTools pipe (did it crash?)")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url):
        """Attach to the browser's page and navigate it to `url`."""
        pages = [t for t in self.call("Target.getTargets", session=False)["targetInfos"] if t["type"] == "page"]
        self.session = self.call("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression):
        """The JSON-able value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout=30):
        """The first truthy value of `expression`, polled; None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        return None

    def click(self, x, y):
        """A left click at page coordinates (CSS pixels), as the mouse makes it: move, press, release."""
        for kind, extra in (("mouseMoved", {}), ("mousePressed", {"button": "left", "buttons": 1, "clickCount": 1}),
                            ("mouseReleased", {"button": "left", "buttons": 0, "clickCount": 1})):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})

    def close(self):
        os.close(self._to_browser)  # the browser exits when its pipe closes
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        os.close(self._from_browser)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
