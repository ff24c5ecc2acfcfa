"""The numbers the tuning page plots: the followed person and the daemon's pace over the last 30 s.

The frame loop appends one small tuple per frame to a fixed-size ring, which is all the work done
while no page is open; the JSON for a page is built only when the page asks for it, and only
from what is newer than the page's last point.
"""
from __future__ import annotations

import math
import threading
from collections import deque

WINDOW_S = 30.0
MAX_FPS = 60          # the frame ring holds WINDOW_S at up to this rate
STATUS_PER_S = 4      # the status ring holds WINDOW_S at up to this many heartbeats a second


def _finite(value: float) -> float | None:
    """JSON has no NaN: a non-finite number is a gap in the plot."""
    return round(value, 5) if math.isfinite(value) else None


class TuningFeed:
    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._frames = deque(maxlen=int(window_s * MAX_FPS))     # (t, offset_x, area, confidence, held)
        self._rates = deque(maxlen=int(window_s * STATUS_PER_S))  # (t, fps, latency p50, p95)
        self._detections: list = []
        self._lock = threading.Lock()
        self.points_sent = 0  # points serialised for pages: stays 0 while no page is open

    def add_frame(self, t_capture: float, detections, target) -> None:
        """`target`: the tracker's Target (reported box, `held`, `found`)."""
        t_capture = round(t_capture, 3)  # what the page gets back as its `since`
        if not target.found:
            point = (t_capture, None, None, None, False)
        else:
            box = target.box
            point = (t_capture, 2 * box.x - 1, box.w * box.h, target.confidence, target.held)
        with self._lock:
            self._frames.append(point)
            self._detections = (detections, target.detection)

    def add_status(self, status: dict) -> None:
        latency = status.get("latency_ms", {})
        with self._lock:
            self._rates.append((round(status.get("t", 0.0), 3), status.get("fps", 0.0), latency.get("p50", 0.0),
                                latency.get("p95", 0.0)))

    def since(self, t_after: float) -> dict:
        """Points newer than `t_after` (and within the window), and the current detections."""
        with self._lock:
            frames, rates = list(self._frames), list(self._rates)
            detections, target = self._detections or ([], None)
        t_newest = frames[-1][0] if frames else 0.0
        t_from = max(t_after, t_newest - self.window_s)
        frames = [[t, *(_finite(v) if v is not None else None for v in values[:3]), held]
                  for t, *values, held in frames if t > t_from]
        rates = [[t, *(_finite(v) for v in values)] for t, *values in rates if t > t_from]
        self.points_sent += len(frames) + len(rates)
        table = [{**d.to_dict(), "target": d == target} for d in detections]
        for row in table:
            row.update((key, _finite(value)) for key, value in row.items() if isinstance(value, float))
        return {"window_s": self.window_s, "frames": frames, "rates": rates, "detections": table}

    @property
    def buffered(self) -> int:
        return len(self._frames) + len(self._rates)
