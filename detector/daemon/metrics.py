"""The daemon's /metrics page: Prometheus text exposition (format 0.0.4) of the status heartbeat,
the debug stream's counters and the HTTP server's."""
from __future__ import annotations

from robot_client.protocol import STATES  # the wire schema is the brick client's, shared on purpose


def prometheus_text(status: dict, frames, feed, server) -> str:
    """`status`: the latest status message; `frames`: the FrameEncoder; `feed`: the TuningFeed;
    `server`: the GuardedHTTPServer."""
    state = status.get("state", "starting")
    latency = status.get("latency_ms", {})
    lines = [
        "# HELP robot_detector_frames_total Frames processed by the detector.",
        "# TYPE robot_detector_frames_total counter",
        f"robot_detector_frames_total {status.get('frames', 0)}",
        "# HELP robot_detector_dropped_frames_total Camera frames replaced by a newer one before processing.",
        "# TYPE robot_detector_dropped_frames_total counter",
        f"robot_detector_dropped_frames_total {status.get('dropped', 0)}",
        "# HELP robot_detector_fps Frames processed per second, recent average.",
        "# TYPE robot_detector_fps gauge",
        f"robot_detector_fps {status.get('fps', 0)}",
        "# HELP robot_detector_latency_ms Capture-to-publish latency over recent frames.",
        "# TYPE robot_detector_latency_ms gauge",
        f'robot_detector_latency_ms{{quantile="0.5"}} {latency.get("p50", 0)}',
        f'robot_detector_latency_ms{{quantile="0.95"}} {latency.get("p95", 0)}',
        "# HELP robot_detector_state Current state (1 for the active one).",
        "# TYPE robot_detector_state gauge",
    ]
    lines += [f'robot_detector_state{{state="{name}"}} {int(name == state)}' for name in STATES]
    for name, kind, text, value in [
            ("stream_viewers", "gauge", "Connected MJPEG viewers.", frames.viewers),
            ("stream_frames_encoded_total", "counter", "Annotated frames JPEG-encoded for the stream.",
             frames.frames_encoded),
            ("stream_encode_errors_total", "counter", "Frames the stream could not draw (skipped).",
             frames.encode_errors),
            ("feed_points_sent_total", "counter", "Plot points sent to tuning pages (0 while none is open).",
             feed.points_sent),
            ("http_connections", "gauge", "Open HTTP connections.", server.connections),
            ("http_rejected_total", "counter", "Connections answered 503 because of the connection cap.",
             server.rejected),
            ("http_request_timeouts_total", "counter", "Connections closed because a request was not "
             "complete in time.", server.timed_out)]:
        lines += [f"# HELP robot_detector_{name} {text}", f"# TYPE robot_detector_{name} {kind}",
                  f"robot_detector_{name} {value}"]
    return "\n".join(lines) + "\n"
