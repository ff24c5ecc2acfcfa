"""The HTTP debug stream: the tuning page, an annotated MJPEG feed, a snapshot, the page's data
feed, status, health and metrics.

Frames are annotated and JPEG-encoded once per processed frame by one encoder thread, shared by
every viewer, and only while someone is watching. Each viewer has its own thread that sends the
newest encoded frame when it is ready, so a slow browser skips frames and never slows detection.
The server's limits and access rules are in webserver.py; the page's numbers in tuning.py.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

import cv2

from ..annotate import draw_detections
from ..errors import EX_CONFIG, UserError
from .tuning import TuningFeed
from .webserver import AccessPolicy, GuardedHandler, GuardedHTTPServer

log = logging.getLogger(__name__)

BOUNDARY = "frame"
HEALTHY_WITHIN_S = 2.0  # /healthz is 200 only if a frame was processed this recently
PAGE_HTML = Path(__file__).with_name("page.html")
ENDPOINTS = "/, /stream.mjpg, /snapshot.jpg, /feed.json, /status.json, /healthz, /metrics"


class DebugStream:
    def __init__(self, host: str, port: int, jpeg_quality: int = 80, token: str | None = None):
        self.jpeg_quality = jpeg_quality
        self.status: dict = {}
        self.healthy = False
        self.viewers = 0
        self.frames_encoded = 0
        self.encode_errors = 0
        self.feed = TuningFeed()
        self.page = PAGE_HTML.read_bytes()
        self._condition = threading.Condition()
        self._pending = None        # the newest offered frame (seq, frame_bgr, detections, target detection)
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self._tried_seq = -1        # the newest frame the encoder worked on, drawn or not
        self._t_last_offer = 0.0
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"stream": self})
        try:
            self.server = GuardedHTTPServer((host, port), handler, AccessPolicy(host, token))
        except OSError as error:
            raise UserError(f"cannot serve the debug stream on {host}:{port}: {error.strerror}. "
                            "Choose another address with --http HOST:PORT, or --no-http.", EX_CONFIG) from None
        self.address = self.server.server_address[:2]
        self._threads = [threading.Thread(target=self.server.serve_forever, name="http", daemon=True),
                         threading.Thread(target=self._encode_loop, name="jpeg-encoder", daemon=True)]

    def start(self) -> "DebugStream":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # --- called by the frame loop: cheap, never blocks on viewers ---
    def offer(self, seq: int, t_capture: float, frame_bgr, detections, tracked) -> None:
        """`tracked`: the tracker's TrackerUpdate for this frame."""
        self.feed.add_frame(t_capture, detections, tracked.target)
        with self._condition:
            self._pending = (seq, frame_bgr, detections, tracked.target.detection)
            self._t_last_offer = time.monotonic()
            if self.viewers:
                self._condition.notify_all()

    def set_status(self, status: dict, healthy: bool) -> None:
        self.status, self.healthy = status, healthy
        self.feed.add_status(status)

    def is_healthy(self) -> bool:
        return self.healthy and time.monotonic() - self._t_last_offer <= HEALTHY_WITHIN_S

    # --- encoding ---
    def overlay_lines(self, seq: int) -> list:
        """fps, latency and engine from the latest status (refreshed about once a second)."""
        s = self.status
        latency = s.get("latency_ms", {})
        return (["DEMO (generated weights)"] if s.get("demo") else []) + [
            f"{s.get('fps', 0):.1f} fps  latency p50 {latency.get('p50', 0):.0f} ms p95 {latency.get('p95', 0):.0f} ms",
            f"{s.get('engine', '?')}/{s.get('device', '?')}  frame {seq}"]

    def _encode(self, pending) -> bytes | None:
        """The annotated JPEG, or None when this frame cannot be drawn (the stream skips it)."""
        seq, frame_bgr, detections, target = pending
        try:
            canvas = draw_detections(frame_bgr, detections, target, self.overlay_lines(seq))
            ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise ValueError("cv2.imencode failed")
        except Exception as error:  # e.g. a non-finite box: lose this frame, never the encoder
            self.encode_errors += 1
            if self.encode_errors == 1:
                log.error("debug stream: frame %d cannot be drawn (%s: %s); such frames are skipped and counted "
                          "in /metrics (robot_detector_stream_encode_errors_total)", seq, type(error).__name__, error)
            log.debug("frame %d not drawn", seq, exc_info=True)
            return None
        self.frames_encoded += 1
        return jpeg.tobytes()

    def _encode_loop(self) -> None:
        while not self._stopping.is_set():
            with self._condition:
                while not self._stopping.is_set() and (self.viewers == 0 or self._pending is None
                                                       or self._pending[0] == self._tried_seq):
                    self._condition.wait(0.5)
                pending = self._pending
            if self._stopping.is_set():
                return
            jpeg = self._encode(pending)
            with self._condition:
                self._tried_seq = pending[0]
                if jpeg is not None:
                    self._jpeg, self._jpeg_seq = jpeg, pending[0]
                    self._condition.notify_all()

    def next_jpeg(self, after_seq: int, timeout: float):
        """(jpeg, seq) newer than `after_seq`, or (None, after_seq) after `timeout` seconds."""
        with self._condition:
            self._condition.wait_for(lambda: self._jpeg_seq != after_seq or self._stopping.is_set(), timeout)
            if self._jpeg_seq == after_seq or self._jpeg is None:
                return None, after_seq
            return self._jpeg, self._jpeg_seq

    def snapshot(self) -> bytes | None:
        with self._condition:
            pending, jpeg, seq = self._pending, self._jpeg, self._jpeg_seq
        if pending is None:
            return None
        return jpeg if pending[0] == seq else self._encode(pending)

    def feed_json(self, t_after: float) -> bytes:
        return json.dumps({**self.feed.since(t_after), "status": self.status}, allow_nan=False).encode()

    def metrics(self) -> str:
        s = self.status
        state = s.get("state", "starting")
        latency = s.get("latency_ms", {})
        server = self.server
        lines = [
            "# HELP robot_detector_frames_total Frames processed by the detector.",
            "# TYPE robot_detector_frames_total counter",
            f"robot_detector_frames_total {s.get('frames', 0)}",
            "# HELP robot_detector_dropped_frames_total Camera frames replaced by a newer one before processing.",
            "# TYPE robot_detector_dropped_frames_total counter",
            f"robot_detector_dropped_frames_total {s.get('dropped', 0)}",
            "# HELP robot_detector_fps Frames processed per second, recent average.",
            "# TYPE robot_detector_fps gauge",
            f"robot_detector_fps {s.get('fps', 0)}",
            "# HELP robot_detector_latency_ms Capture-to-publish latency over recent frames.",
            "# TYPE robot_detector_latency_ms gauge",
            f'robot_detector_latency_ms{{quantile="0.5"}} {latency.get("p50", 0)}',
            f'robot_detector_latency_ms{{quantile="0.95"}} {latency.get("p95", 0)}',
            "# HELP robot_detector_state Current state (1 for the active one).",
            "# TYPE robot_detector_state gauge",
        ]
        lines += [f'robot_detector_state{{state="{name}"}} {int(name == state)}'
                  for name in ("starting", "running", "camera_lost", "stopping")]
        for name, kind, text, value in [
                ("stream_viewers", "gauge", "Connected MJPEG viewers.", self.viewers),
                ("stream_frames_encoded_total", "counter", "Annotated frames JPEG-encoded for the stream.",
                 self.frames_encoded),
                ("stream_encode_errors_total", "counter", "Frames the stream could not draw (skipped).",
                 self.encode_errors),
                ("feed_points_sent_total", "counter", "Plot points sent to tuning pages (0 while none is open).",
                 self.feed.points_sent),
                ("http_connections", "gauge", "Open HTTP connections.", server.connections),
                ("http_rejected_total", "counter", "Connections answered 503 because of the connection cap.",
                 server.rejected),
                ("http_request_timeouts_total", "counter", "Connections closed because a request was not "
                 "complete in time.", server.timed_out)]:
            lines += [f"# HELP robot_detector_{name} {text}", f"# TYPE robot_detector_{name} {kind}",
                      f"robot_detector_{name} {value}"]
        return "\n".join(lines) + "\n"


class _Handler(GuardedHandler):
    stream: DebugStream

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")  # a ?token= stays on this page
        self.end_headers()
        self.wfile.write(body)

    def route(self, path: str, query: str) -> None:
        stream = self.stream
        if path == "/":
            self._send(200, "text/html; charset=utf-8", stream.page)
        elif path == "/stream.mjpg":
            self._mjpeg()
        elif path == "/snapshot.jpg":
            jpeg = stream.snapshot()
            if jpeg is None:
                self._send(503, "text/plain", b"no frame to show yet\n")
            else:
                self._send(200, "image/jpeg", jpeg)
        elif path == "/feed.json":
            try:
                since = float(parse_qs(query).get("since", ["0"])[0])
            except ValueError:
                since = 0.0
            self._send(200, "application/json", stream.feed_json(since))
        elif path == "/status.json":
            self._send(200, "application/json", json.dumps(stream.status).encode())
        elif path == "/healthz":
            healthy = stream.is_healthy()
            self._send(200 if healthy else 503, "text/plain", b"ok\n" if healthy else
                       f"unhealthy: {stream.status.get('state', 'starting')}\n".encode())
        elif path == "/metrics":
            self._send(200, "text/plain; version=0.0.4", stream.metrics().encode())
        else:
            self._send(404, "text/plain", f"not found: try {ENDPOINTS}\n".encode())

    def _mjpeg(self) -> None:
        stream = self.stream
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        with stream._condition:
            stream.viewers += 1
            stream._condition.notify_all()
        seq = -1
        try:  # a viewer that goes away ends here; the server logs it at debug level
            while not stream._stopping.is_set():
                jpeg, seq = stream.next_jpeg(seq, timeout=1.0)
                if jpeg is None:
                    continue
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
                self.wfile.write(jpeg)
                self.wfile.write(b"\r\n")
                self.wfile.flush()
        finally:
            with stream._condition:
                stream.viewers -= 1
            self.close_connection = True
