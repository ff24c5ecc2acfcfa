"""The HTTP debug stream: routes for the tuning page, an annotated MJPEG feed, a snapshot, the
page's data feed, the tracks and the choice of whom to follow (choice.py), status, health and metrics.

The frames come from frame_encoder.py (one encoder shared by every viewer), the /metrics text from
metrics.py, the page's numbers from tuning.py; the server's limits and access rules are in webserver.py.
"""
from __future__ import annotations

import json
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from .choice import ChoiceDesk, answer_target_post
from .frame_encoder import FrameEncoder
from .metrics import prometheus_text
from .tuning import TuningFeed
from .webserver import AccessPolicy, GuardedHandler, GuardedHTTPServer

BOUNDARY = "frame"
HEALTHY_WITHIN_S = 2.0  # /healthz is 200 only if a frame was processed this recently
PAGE_HTML = Path(__file__).with_name("page.html")
ENDPOINTS = "/, /stream.mjpg, /snapshot.jpg, /feed.json, /tracks.json, /status.json, /healthz, /metrics"


class DebugStream:
    """The debug HTTP server and what it serves: the frame loop calls `offer` and `set_status`."""

    def __init__(self, host: str, port: int, jpeg_quality: int = 80, token: str | None = None):
        self.status: dict = {}
        self.healthy = False
        self.feed = TuningFeed()
        self.choices = ChoiceDesk()
        self.frames = FrameEncoder(self.overlay_lines, jpeg_quality)
        self.page = PAGE_HTML.read_bytes()
        handler = type("Handler", (_Handler,), {"stream": self})
        self.server = GuardedHTTPServer.bind(host, port, handler, AccessPolicy(host, token), "the debug stream",
                                             "Choose another address with --http HOST:PORT, or --no-http.")
        self.address = self.server.server_address[:2]

    def start(self) -> "DebugStream":
        self.frames.start()
        self.server.start()
        return self

    def stop(self) -> None:
        self.frames.stop()
        self.server.stop()

    # --- called by the frame loop: cheap, never blocks on viewers ---
    def offer(self, seq: int, t_capture: float, frame_bgr, detections, tracked) -> None:
        """`tracked`: the tracker's TrackerUpdate for this frame."""
        self.feed.add_frame(t_capture, detections, tracked.target)
        self.choices.show(seq, t_capture, tracked)
        self.frames.offer(seq, frame_bgr, detections, tracked.target.detection)

    def set_status(self, status: dict, healthy: bool) -> None:
        self.status, self.healthy = status, healthy
        self.feed.add_status(status)

    def is_healthy(self) -> bool:
        return self.healthy and time.monotonic() - self.frames.t_last_offer <= HEALTHY_WITHIN_S

    def overlay_lines(self, seq: int) -> list:
        """fps, latency and engine from the latest status (refreshed about once a second)."""
        s = self.status
        latency = s.get("latency_ms", {})
        return (["DEMO (generated weights)"] if s.get("demo") else []) + [
            f"{s.get('fps', 0):.1f} fps  latency p50 {latency.get('p50', 0):.0f} ms p95 {latency.get('p95', 0):.0f} ms",
            f"{s.get('engine', '?')}/{s.get('device', '?')}  frame {seq}"]

    def feed_json(self, t_after: float) -> bytes:
        return json.dumps({**self.feed.since(t_after), "status": self.status}, allow_nan=False).encode()

    def metrics(self) -> str:
        return prometheus_text(self.status, self.frames, self.feed, self.server)


class _Handler(GuardedHandler):
    stream: DebugStream

    def route(self, path: str, query: str) -> None:
        stream = self.stream
        if path == "/":
            self.send_body(200, "text/html; charset=utf-8", stream.page)
        elif path == "/stream.mjpg":
            self._mjpeg()
        elif path == "/snapshot.jpg":
            jpeg = stream.frames.snapshot()
            if jpeg is None:
                self.send_body(503, "text/plain", b"no frame to show yet\n")
            else:
                self.send_body(200, "image/jpeg", jpeg)
        elif path == "/feed.json":
            try:
                since = float(parse_qs(query).get("since", ["0"])[0])
            except ValueError:
                since = 0.0
            self.send_body(200, "application/json", stream.feed_json(since))
        elif path == "/tracks.json":
            self.send_body(200, "application/json", stream.choices.tracks_json())
        elif path == "/status.json":
            self.send_body(200, "application/json", json.dumps(stream.status).encode())
        elif path == "/healthz":
            healthy = stream.is_healthy()
            self.send_body(200 if healthy else 503, "text/plain", b"ok\n" if healthy else
                       f"unhealthy: {stream.status.get('state', 'starting')}\n".encode())
        elif path == "/metrics":
            self.send_body(200, "text/plain; version=0.0.4", stream.metrics().encode())
        else:
            self.send_body(404, "text/plain", f"not found: try {ENDPOINTS}\n".encode())

    def route_post(self, path: str, query: str, body) -> None:
        if path != "/target":
            self.send_json_error(405, f"{path} takes no writes; POST /target chooses whom to follow")
            return
        status, answer = answer_target_post(self.stream.choices, body)
        self.send_body(status, "application/json", json.dumps(answer).encode())

    def _mjpeg(self) -> None:
        stream = self.stream
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        try:  # a viewer that goes away ends here; the server logs it at debug level
            with stream.frames.viewer() as jpegs:
                for jpeg in jpegs:
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
                    self.wfile.flush()
        finally:
            self.close_connection = True
