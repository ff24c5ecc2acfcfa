"""Telling a frozen video source from a still scene.

Capture dongles, v4l2loopback devices and IP cameras that hang keep delivering their last picture:
every read succeeds, and a robot would follow a person who left long ago. A live picture is never
repeated exactly: sensor noise moves pixels by several levels from one frame to the next, and a
compressed stream (MJPEG, H.264) of a still scene still changes some pixels in every frame. So a
source whose pictures stay within one level of the same picture, in every pixel and channel, for
`frozen_s` seconds is frozen; the one level admits a camera that re-encodes its last picture.
The measurements behind this (real clip, noisy still scenes, a small moving region, the cost per
frame) are in docs/measurements/frozen.md.
"""
from __future__ import annotations

import cv2
import numpy as np

STEADY_LEVELS = 1  # the largest per-value difference (0-255 scale) that still counts as the same picture


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether no value of `a` differs from `b` by more than STEADY_LEVELS. Every pixel is compared:
    a strided sample or a downscaled copy misses a small moving region, and the full comparison
    costs about 0.02 ms for 640x480 (0.14 ms for 1920x1080)."""
    return a.shape == b.shape and cv2.norm(a, b, cv2.NORM_INF) <= STEADY_LEVELS


class FreezeWatch:
    """Follows one source's frames; `frozen` says when its picture has stood still for `frozen_s`.

    Each frame is compared with the picture as it was when it last changed (not with the frame just
    before), so a drift of one level per frame counts as change once it adds up to more than one.
    The watch outlives a reopen of the source: a source that comes back with the same picture is
    still frozen.
    """

    def __init__(self, frozen_s: float):
        self.frozen_s = frozen_s
        self._picture: np.ndarray | None = None
        self._t_changed = 0.0  # time.monotonic() of the frame that showed the current picture first

    def frozen(self, image: np.ndarray, t_monotonic: float) -> bool:
        if self._picture is None or not same_picture(image, self._picture):
            self._picture, self._t_changed = image, t_monotonic
            return False
        return t_monotonic - self._t_changed >= self.frozen_s
