"""Headless Chromium driven over the DevTools protocol with the standard library only: a minimal
WebSocket client (RFC 6455, text frames, client masking) and the few commands the page tests use.
Mouse and keyboard go through Input.dispatchMouseEvent / Input.dispatchKeyEvent: the browser
turns them into the same DOM events a person's mouse and keyboard make."""
import base64
import json
import os
import re
import socket
import struct
import subprocess
import time
import urllib.request
from urllib.parse import urlparse

# key -> (code, Windows virtual key code, text typed)
KEYS = {"Enter": ("Enter", 13, "\r"), "Tab": ("Tab", 9, ""), "Delete": ("Delete", 46, ""),
        "Escape": ("Escape", 27, ""), "ArrowLeft": ("ArrowLeft", 37, ""), "ArrowUp": ("ArrowUp", 38, ""),
        "ArrowRight": ("ArrowRight", 39, ""), "ArrowDown": ("ArrowDown", 40, "")}
MODIFIERS = {"alt": 1, "ctrl": 2, "meta": 4, "shift": 8}


class WebSocket:
    def __init__(self, ws_url, timeout=30.0):
        parts = urlparse(ws_url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:200]!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x81, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self):
        """The next text message (fragments joined; control frames skipped)."""
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(length)
            opcode = first & 0x0F
            if opcode == 8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0, 1):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self):
        self.sock.close()


class Browser:
    """One headless Chromium with one page; `call` sends a DevTools command and returns its result."""

    def __init__(self, chromium, profile_dir, width=1200, height=820):
        # stderr to a file: a pipe nobody reads after start-up would fill and stall the browser
        log_path = os.path.join(profile_dir, "chromium.log")
        os.makedirs(profile_dir, exist_ok=True)
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile_dir}",
                 f"--window-size={width},{height}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=log)
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", open(log_path).read())
            port = int(match.group(1)) if match else None
            if port is None and self.process.poll() is not None:
                raise RuntimeError(f"chromium exited before DevTools listened: {open(log_path).read()[-500:]}")
            time.sleep(0.1)
        if port is None:
            raise RuntimeError("chromium did not say where DevTools listens")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url, ready="document.body && document.body.dataset.busy === '0'", timeout=30):
        self.call("Page.navigate", url=url)
        self.wait_for(ready, timeout)

    def wait_for(self, expression, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except RuntimeError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"not true within {timeout}s: {expression}")

    # --- a person's hands ---
    def mouse(self, kind, x, y, buttons=1):
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                  buttons=buttons if kind != "mouseReleased" else 0, clickCount=1 if kind != "mouseMoved" else 0)

    def drag(self, start, end, steps=5):
        self.mouse("mouseMoved", *start, buttons=0)
        self.mouse("mousePressed", *start)
        for i in range(1, steps + 1):
            self.mouse("mouseMoved", start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
        self.mouse("mouseReleased", *end)

    def click(self, point):
        self.drag(point, point, steps=0)

    def key(self, key, *modifiers):
        code, vk, text = KEYS.get(key, (f"Key{key.upper()}" if key.isalpha() else f"Digit{key}" if key.isdigit() else "",
                                        ord(key.upper()) if len(key) == 1 else 0, key))
        bits = sum(MODIFIERS[m] for m in modifiers)
        down = dict(key=key, code=code, windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk, modifiers=bits)
        self.call("Input.dispatchKeyEvent", type="keyDown" if text and not bits & 6 else "rawKeyDown",
                  **({"text": text, "unmodifiedText": text} if text and not bits & 6 else {}), **down)
        self.call("Input.dispatchKeyEvent", type="keyUp", **down)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
