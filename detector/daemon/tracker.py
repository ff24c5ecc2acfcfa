"""Which person the robot follows: lock onto one, keep it by overlap, hold it through short gaps."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..model.decode import Detection, iou_matrix


class Target(NamedTuple):
    detection: Detection   # the detection matched this frame, or the held one during a gap
    x: float
    y: float
    w: float
    h: float
    confidence: float
    held: bool             # True while the target is not seen this frame but still within the grace period


class TargetTracker:
    """Locks onto the largest person when none is locked, then follows that same person (the one
    overlapping the last box most, IoU >= `min_iou`) even when someone larger appears. A target
    unseen for up to `grace_s` seconds is still reported (held) before it is dropped. This is the
    system's one grace period: the robot client stops as soon as `found` is false.

    `smoothing` in [0, 1): exponential smoothing of x, y, w, h (0 = none); the new value weighs
    1 - smoothing, so 0.5 halves jitter at the cost of about one frame of lag.
    """

    def __init__(self, min_iou: float = 0.3, grace_s: float = 0.5, smoothing: float = 0.0):
        self.min_iou = min_iou
        self.grace_s = grace_s
        self.smoothing = smoothing
        self._target: Target | None = None
        self._last_seen = 0.0

    def update(self, persons: list, t: float) -> Target | None:
        """persons: this frame's person detections (finite numbers only); t: the frame's capture
        time on the monotonic clock, so that a step of the wall clock cannot stretch the grace."""
        match = self._match(persons)
        if match is None:
            if self._target is not None and t - self._last_seen <= self.grace_s:
                self._target = self._target._replace(held=True)
                return self._target
            self._target = None
            return None
        box = np.array([match.x, match.y, match.w, match.h])
        if self._target is not None and self.smoothing:
            previous = np.array([self._target.x, self._target.y, self._target.w, self._target.h])
            box = self.smoothing * previous + (1 - self.smoothing) * box
        self._target = Target(match, *map(float, box), match.confidence, False)
        self._last_seen = t
        return self._target

    def _match(self, persons: list) -> Detection | None:
        if not persons:
            return None
        if self._target is None:
            return max(persons, key=lambda d: d.w * d.h)
        last = self._target.detection
        boxes = np.array([[last.x, last.y, last.w, last.h]] + [[d.x, d.y, d.w, d.h] for d in persons], np.float32)
        overlaps = np.nan_to_num(iou_matrix(boxes)[0, 1:])
        best = int(np.argmax(overlaps))
        if overlaps[best] >= self.min_iou:
            return persons[best]
        return None
