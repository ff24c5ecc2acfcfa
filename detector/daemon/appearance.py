"""What the followed person looks like: a hue-saturation histogram of the upper body (the clothes),
learned while the person is tracked and compared with candidates when it is lost.

Colour histograms are cheap (a few hundred pixels per box) and do not care about pose or the box's
exact fit, which is what re-identification after a walk-out needs; they cannot tell apart two people
dressed alike, which is why they only ever re-take the lost target, never switch it.
"""
from __future__ import annotations

import cv2
import numpy as np

HUE_BINS, SATURATION_BINS = 18, 8
MIN_VALUE = 40               # darker pixels carry no reliable hue
UPPER_BODY = (0.15, 0.5)     # the part of the box's height read, from the top: below the head, above the belt
CENTRE_WIDTH = 0.6           # the middle part of the box's width (the background fills the sides)
LEARN_RATE = 0.1             # weight of each new sighting in the learned histogram
MIN_SIGHTINGS = 3            # sightings before the learned histogram is trusted
MAX_PIXELS = 1024           # pixels read per box
MAX_DISTANCE = 0.4          # Bhattacharyya distance (0 = identical, 1 = disjoint) accepted as the same person


class Appearance:
    def __init__(self, max_distance: float = MAX_DISTANCE):
        self.max_distance = max_distance
        self._model: np.ndarray | None = None
        self._sightings = 0

    def reset(self) -> None:
        self._model, self._sightings = None, 0

    def learn(self, frame_bgr: np.ndarray, detection, others) -> None:
        """Add a sighting of the target, unless another person's box overlaps it (its colours would mix in)."""
        if any(_overlap(detection, other) for other in others):
            return
        histogram = upper_body_histogram(frame_bgr, detection)
        if histogram is None:
            return
        self._model = histogram if self._model is None else (1 - LEARN_RATE) * self._model + LEARN_RATE * histogram
        self._sightings += 1

    def best_match(self, frame_bgr: np.ndarray, candidates) -> int | None:
        """The index of the candidate that looks like the learned target, or None."""
        if self._model is None or self._sightings < MIN_SIGHTINGS:
            return None
        best, best_distance = None, self.max_distance
        for index, detection in enumerate(candidates):
            histogram = upper_body_histogram(frame_bgr, detection)
            if histogram is None:
                continue
            distance = cv2.compareHist(self._model, histogram, cv2.HISTCMP_BHATTACHARYYA)
            if distance < best_distance:
                best, best_distance = index, distance
        return best


def upper_body_histogram(frame_bgr: np.ndarray, detection) -> np.ndarray | None:
    """The normalised hue-saturation histogram (float32) of the box's upper body, or None when that
    region is empty or has no bright enough pixel."""
    frame_h, frame_w = frame_bgr.shape[:2]
    top = detection.y - detection.h / 2
    rows = (int((top + UPPER_BODY[0] * detection.h) * frame_h), int((top + UPPER_BODY[1] * detection.h) * frame_h))
    half = CENTRE_WIDTH * detection.w / 2
    columns = (int((detection.x - half) * frame_w), int((detection.x + half) * frame_w))
    rows = tuple(min(max(v, 0), frame_h) for v in rows)
    columns = tuple(min(max(v, 0), frame_w) for v in columns)
    if rows[1] - rows[0] < 2 or columns[1] - columns[0] < 2:
        return None
    # A histogram needs no more than about MAX_PIXELS pixels: a near person's box is sampled sparsely
    step = max(1, int(((rows[1] - rows[0]) * (columns[1] - columns[0]) / MAX_PIXELS) ** 0.5))
    hsv = cv2.cvtColor(np.ascontiguousarray(frame_bgr[rows[0]:rows[1]:step, columns[0]:columns[1]:step]),
                       cv2.COLOR_BGR2HSV)
    mask = (hsv[..., 2] >= MIN_VALUE).astype(np.uint8)
    histogram = cv2.calcHist([hsv], [0, 1], mask, [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256])
    total = float(histogram.sum())
    if total == 0:
        return None
    return histogram / total


def _overlap(a, b) -> bool:
    return abs(a.x - b.x) < (a.w + b.w) / 2 and abs(a.y - b.y) < (a.h + b.h) / 2
