"""Starting the real daemon as a user would (the console script), and listening to it with a
plain pyzmq SUB socket."""
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import zmq

from robot_client import protocol

SCRIPT = str(Path(sys.executable).parent / "robot-detector")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Listener:
    """A SUB socket collecting every message (topic, payload, raw) on a background thread."""

    def __init__(self, endpoint, topics=protocol.TOPICS):
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode() + b" ")
        self.socket.connect(endpoint)
        self.messages = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if self.socket.poll(50):
                raw = self.socket.recv()
                topic, _, body = raw.partition(b" ")
                self.messages.append((topic.decode(), raw, time.monotonic()))

    def of(self, topic):
        return [protocol.decode(raw)[1] for t, raw, _ in list(self.messages) if t == topic]

    def wait_for(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self._stop.set()
        self._thread.join()
        self.socket.close()


class Daemon:
    """`robot-detector run ...` on free loopback ports; `.pub`, `.http` say where."""

    def __init__(self, *args, http=True, env=None, log_path=None):
        """`log_path`: write stderr there (long runs: a pipe nobody reads would fill and block the
        daemon); `.stderr` is then read from it after the daemon ends."""
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.http_port = free_port() if http else None
        http_args = ["--http", f"127.0.0.1:{self.http_port}"] if http else ["--no-http"]
        self.args = [SCRIPT, "run", "--pub", self.pub, *http_args, *map(str, args)]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def start(self):
        stderr = open(self.log_path, "w") if self.log_path else subprocess.PIPE
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=self.env)
        if self.log_path:
            stderr.close()
        return self

    def wait(self, timeout=60):
        out, err = self.process.communicate(timeout=timeout)
        self.stdout, self.stderr = out, (open(self.log_path).read() if self.log_path else err)
        return self.process.returncode

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run_until_exit(daemon, topics=protocol.TOPICS, timeout=120):
    """Start a daemon that stops by itself (--max-frames) and return a Listener of what it sent."""
    listener = Listener(daemon.pub, topics)
    try:
        daemon.start()
        assert daemon.wait(timeout) == 0, daemon.stderr
        time.sleep(0.3)  # the last messages are on their way
    finally:
        listener.close()
    return listener


def moving_block(index, size=(320, 240)):
    """A grey field with an orange block that moves 12 pixels a frame."""
    import numpy as np
    image = np.full((size[1], size[0], 3), 60, np.uint8)
    x = (index * 12) % (size[0] - 40)
    image[80:160, x:x + 40] = (0, 180, 255)
    return image


def write_clip(path, frames=20, fps=10.0, size=(320, 240)):
    """A real video file (MJPG in AVI) with a moving block, standing in for a webcam."""
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(moving_block(i, size))
    writer.release()
    return path


class MjpegServer:
    """A network camera on loopback: an endless multipart/x-mixed-replace JPEG stream at `fps`, as
    IP cameras serve. `stop()` unplugs it; `start()` again plugs it back in on the same port.
    `picture(index)` draws frame `index` of a connection (BGR); setting `frozen` makes it resend its
    last JPEG, over this connection and any new one, as a hung camera does. `connections` counts
    the GET requests it answered."""

    def __init__(self, fps=10.0, size=(320, 240), picture=None):
        self.port, self.fps, self.size = free_port(), fps, size
        self.picture = picture or (lambda index: moving_block(index, size))
        self.frozen = False
        self.connections = 0
        self.last_jpeg = None
        self.server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self):
        import cv2
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                camera.connections += 1
                index = 0
                try:
                    while not self.server.stopping:
                        if not (camera.frozen and camera.last_jpeg):
                            camera.last_jpeg = cv2.imencode(".jpg", camera.picture(index))[1].tobytes()
                        jpeg = camera.last_jpeg
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                         % (len(jpeg), jpeg))
                        index += 1
                        time.sleep(1 / camera.fps)
                except OSError:
                    pass  # the client went away

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.stopping = False
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.stopping = True
        self.server.shutdown()
        self.server.server_close()
