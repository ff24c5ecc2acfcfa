"""The HTTP debug stream: an annotated MJPEG feed, a snapshot, status, health and metrics.

Frames are annotated and JPEG-encoded once per processed frame by one encoder thread, shared by
every viewer, and only while someone is watching. Each viewer has its own thread that sends the
newest encoded frame when it is ready, so a slow browser skips frames and never slows detection.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from ..annotate import draw_detections
from ..errors import EX_CONFIG, UserError

log = logging.getLogger(__name__)

BOUNDARY = "frame"
HEALTHY_WITHIN_S = 2.0  # /healthz is 200 only if a frame was processed this recently

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>robot-detector</title>
<style>
 body { font-family: sans-serif; background: #111; color: #eee; margin: 1em; }
 #demo { display: none; background: #c60; color: #fff; padding: .2em .6em; font-weight: bold; }
 img { max-width: 100%; border: 1px solid #444; }
 table { border-collapse: collapse; margin-top: .5em; } td { padding: .1em .8em .1em 0; }
</style></head>
<body>
<h1>robot-detector <span id="demo">DEMO: generated weights, planted person</span></h1>
<img id="stream" src="/stream.mjpg" alt="annotated camera stream">
<table id="status"></table>
<p><a href="/snapshot.jpg">snapshot</a> &middot; <a href="/status.json">status.json</a> &middot;
<a href="/metrics">metrics</a> &middot; <a href="/healthz">healthz</a></p>
<script>
async function refresh() {
  try {
    const s = await (await fetch('/status.json')).json();
    document.getElementById('demo').style.display = s.demo ? 'inline' : 'none';
    const rows = [['state', s.state], ['fps', s.fps], ['latency p50 / p95 (ms)',
      s.latency_ms.p50 + ' / ' + s.latency_ms.p95], ['frames', s.frames], ['dropped', s.dropped],
      ['engine', s.engine + ' on ' + s.device]];
    document.getElementById('status').innerHTML =
      rows.map(r => '<tr><td>' + r[0] + '</td><td>' + r[1] + '</td></tr>').join('');
  } catch (e) { document.getElementById('status').innerHTML = '<tr><td>no status</td></tr>'; }
}
refresh(); setInterval(refresh, 1000);
</script>
</body></html>
"""


class DebugStream:
    def __init__(self, host: str, port: int, jpeg_quality: int = 80):
        self.jpeg_quality = jpeg_quality
        self.status: dict = {}
        self.healthy = False
        self.viewers = 0
        self.frames_encoded = 0
        self._condition = threading.Condition()
        self._pending = None        # the newest offered frame, not yet encoded
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self._t_last_offer = 0.0
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"stream": self})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise UserError(f"cannot serve the debug stream on {host}:{port}: {error.strerror}. "
                            "Choose another address with --http HOST:PORT, or --no-http.", EX_CONFIG) from None
        self.server.daemon_threads = True
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
    def offer(self, seq: int, frame_bgr, detections, target) -> None:
        with self._condition:
            self._pending = (seq, frame_bgr, detections, target)
            self._t_last_offer = time.monotonic()
            if self.viewers:
                self._condition.notify_all()

    def set_status(self, status: dict, healthy: bool) -> None:
        self.status, self.healthy = status, healthy

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

    def _encode(self, pending) -> bytes:
        seq, frame_bgr, detections, target = pending
        canvas = draw_detections(frame_bgr, detections, target, self.overlay_lines(seq))
        ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        self.frames_encoded += 1
        return jpeg.tobytes()

    def _encode_loop(self) -> None:
        while not self._stopping.is_set():
            with self._condition:
                while not self._stopping.is_set() and (self.viewers == 0 or self._pending is None
                                                       or self._pending[0] == self._jpeg_seq):
                    self._condition.wait(0.5)
                pending = self._pending
            if self._stopping.is_set():
                return
            jpeg = self._encode(pending)
            with self._condition:
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

    def metrics(self) -> str:
        s = self.status
        state = s.get("state", "starting")
        latency = s.get("latency_ms", {})
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
        lines += ["# HELP robot_detector_stream_viewers Connected MJPEG viewers.",
                  "# TYPE robot_detector_stream_viewers gauge", f"robot_detector_stream_viewers {self.viewers}",
                  "# HELP robot_detector_stream_frames_encoded_total Annotated frames JPEG-encoded for the stream.",
                  "# TYPE robot_detector_stream_frames_encoded_total counter",
                  f"robot_detector_stream_frames_encoded_total {self.frames_encoded}"]
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    stream: DebugStream
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("http %s: " + fmt, self.client_address[0], *args)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0]
        stream = self.stream
        if path == "/":
            self._send(200, "text/html; charset=utf-8", PAGE.encode())
        elif path == "/stream.mjpg":
            self._mjpeg()
        elif path == "/snapshot.jpg":
            jpeg = stream.snapshot()
            if jpeg is None:
                self._send(503, "text/plain", b"no frame processed yet\n")
            else:
                self._send(200, "image/jpeg", jpeg)
        elif path == "/status.json":
            self._send(200, "application/json", json.dumps(stream.status).encode())
        elif path == "/healthz":
            healthy = stream.is_healthy()
            self._send(200 if healthy else 503, "text/plain", b"ok\n" if healthy else
                       f"unhealthy: {stream.status.get('state', 'starting')}\n".encode())
        elif path == "/metrics":
            self._send(200, "text/plain; version=0.0.4", stream.metrics().encode())
        else:
            self._send(404, "text/plain", b"not found: try /, /stream.mjpg, /snapshot.jpg, /status.json, /healthz, /metrics\n")

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
        try:
            while not stream._stopping.is_set():
                jpeg, seq = stream.next_jpeg(seq, timeout=1.0)
                if jpeg is None:
                    continue
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
                self.wfile.write(jpeg)
                self.wfile.write(b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with stream._condition:
                stream.viewers -= 1
            self.close_connection = True
