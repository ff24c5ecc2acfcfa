"""Telling a frozen video source from a still scene.

Capture dongles, v4l2loopback devices and IP cameras that hang keep delivering their last picture:
every read succeeds, and a robot would follow a person who left long ago. A live picture is never
repeated exactly: sensor noise moves pixels by several levels from one frame to the next, and a
compressed stream (MJPEG, H.264) of a still scene still changes some pixels in every frame. So a
source whose pictures stay within one level of the same picture, in every pixel and channel, for
`frozen_s` seconds is frozen; the one level admits a camera that re-encodes its last picture. A
stuck driver may also cycle through its few buffers (A, B, A, B...): a frame that repeats any of the
last RECENT_PICTURES distinct pictures shows nothing new either.
The measurements behind this (real clip, noisy still scenes, a small moving region, the cost per
frame) are in docs/measurements/frozen.md.
"""
from __future__ import annotations

import cv2
import numpy as np

STEADY_LEVELS = 1  # the largest per-value difference (0-255 scale) that still counts as the same picture
RECENT_PICTURES = 4  # distinct pictures remembered: V4L2 drivers commonly queue 2 to 4 buffers


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether no value of `a` differs from `b` by more than STEADY_LEVELS. Every pixel is compared:
    a strided sample or a downscaled copy misses a small moving region. A band of rows is compared
    first: live pictures differ there already (noise is everywhere), so most comparisons stop after
    1/16 of the picture, and the answer is the same (a band that differs means the whole does)."""
    if a.shape != b.shape:
        return False
    band = slice(a.shape[0] * 15 // 32, a.shape[0] * 17 // 32)
    return (cv2.norm(a[band], b[band], cv2.NORM_INF) <= STEADY_LEVELS
            and cv2.norm(a, b, cv2.NORM_INF) <= STEADY_LEVELS)


class FreezeWatch:
    """Follows one source's frames; `frozen` says when no new picture has come for `frozen_s`.

    A frame is new when it is not the same picture as any of the last RECENT_PICTURES distinct ones,
    each kept as it was when it first showed (not updated by the frames that repeat it), so a drift of
    one level per frame counts as change once it adds up to more than one. The watch outlives a reopen
    of the source: a source that comes back with the same picture is still frozen.
    """

    def __init__(self, frozen_s: float):
        self.frozen_s = frozen_s
        self._recent: list[np.ndarray] = []  # the last distinct pictures, newest first
        self._t_new = 0.0  # time.monotonic() of the last frame that showed a new picture

    def reopened(self, t_monotonic: float) -> None:
        """The source was reopened after it was lost (not after it froze): its pictures are judged
        from now on, so a stream that restarts at a picture it showed before the loss (a looping
        test pattern, a still scene without noise) is not frozen at its first frame; one that comes
        back still is frozen `frozen_s` later. After a freeze no reset: it stays frozen until a new
        picture comes."""
        self._t_new = t_monotonic

    def frozen(self, image: np.ndarray, t_monotonic: float) -> bool:
        if not any(same_picture(image, picture) for picture in self._recent):
            self._recent = [image] + self._recent[:RECENT_PICTURES - 1]
            self._t_new = t_monotonic
            return False
        return t_monotonic - self._t_new >= self.frozen_s
