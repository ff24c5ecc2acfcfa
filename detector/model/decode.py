"""Darknet v1 detection-layer decoding, vectorised: raw outputs -> thresholded, per-class-NMS'd
detections with normalised boxes.

Semantics follow Darknet exactly (see docs/design/darknet-v1.md): prob = box confidence x class score
in float32, kept when strictly above the threshold, one box may carry several classes, and NMS per
class zeroes later boxes whose IoU with a surviving earlier box is strictly above `nms_iou`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
PERSON = VOC_CLASSES.index("person")


class Detection(NamedTuple):
    cls: str
    cls_id: int
    confidence: float
    x: float  # box centre, fraction of frame width
    y: float  # box centre, fraction of frame height
    w: float  # box width, fraction of frame width
    h: float  # box height, fraction of frame height

    def pixel_box(self, frame_w: int, frame_h: int) -> tuple:
        """(left, top, right, bottom) in pixels, clipped to the frame."""
        left = max(0, int(round((self.x - self.w / 2) * frame_w)))
        top = max(0, int(round((self.y - self.h / 2) * frame_h)))
        right = min(frame_w - 1, int(round((self.x + self.w / 2) * frame_w)))
        bottom = min(frame_h - 1, int(round((self.y + self.h / 2) * frame_h)))
        return left, top, right, bottom

    def to_dict(self) -> dict:
        """The wire form: floats rounded to 6 decimals (float32 precision; keeps messages short)."""
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in self._asdict().items()}


def decode_boxes(raw: np.ndarray, side: int = 7, num: int = 2, classes: int = 20, sqrt: bool = True) -> tuple:
    """Split one image's raw outputs into (boxes (side*side*num, 4) as x, y, w, h normalised,
    probs (side*side*num, classes) float32). `sqrt`: the cfg's flag, the network predicts sqrt(w),
    sqrt(h) (both Tiny-YOLO v1 cfgs); without it, w and h directly (Darknet's default)."""
    raw = np.asarray(raw, dtype=np.float32).reshape(-1)
    cells = side * side
    class_scores = raw[:cells * classes].reshape(cells, 1, classes)
    confidence = raw[cells * classes:cells * (classes + num)].reshape(cells, num, 1)
    coords = raw[cells * (classes + num):].reshape(cells, num, 4)
    cell = np.arange(cells)
    col = (cell % side).astype(np.float32)[:, None]
    row = (cell // side).astype(np.float32)[:, None]
    boxes = np.empty((cells, num, 4), np.float32)
    boxes[..., 0] = (coords[..., 0] + col) / side
    boxes[..., 1] = (coords[..., 1] + row) / side
    boxes[..., 2:] = coords[..., 2:] ** 2 if sqrt else coords[..., 2:]
    probs = (confidence * class_scores).reshape(cells * num, classes)
    return boxes.reshape(cells * num, 4), probs


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (k, 4) centre-size boxes, float32; NaN for two zero-size boxes, as in Darknet."""
    half = boxes[:, 2:] / 2
    low, high = boxes[:, :2] - half, boxes[:, :2] + half
    overlap = np.minimum(high[:, None], high[None]) - np.maximum(low[:, None], low[None])
    overlap = np.where(overlap < 0, np.float32(0), overlap)
    intersection = overlap[..., 0] * overlap[..., 1]
    area = boxes[:, 2] * boxes[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return intersection / (area[:, None] + area[None] - intersection)


def suppress(probs: np.ndarray, boxes: np.ndarray, nms_iou: float) -> np.ndarray:
    """Per-class NMS on thresholded probs (zeros are not candidates). Returns the kept mask.

    All classes advance together: step i lets each class's i-th best candidate, if still alive,
    suppress the later ones it overlaps. The only Python loop is over candidate ranks.
    """
    keep = probs > 0
    classes = np.flatnonzero(keep.sum(axis=0) >= 2)
    if classes.size == 0:
        return keep
    boxes_in_play = np.flatnonzero(keep[:, classes].any(axis=1))        # candidates of some class
    class_probs = probs[np.ix_(boxes_in_play, classes)].T               # (K, boxes in play)
    ranks = int(keep[:, classes].sum(axis=0).max())
    order = np.argsort(-class_probs, axis=1, kind="stable")[:, :ranks]  # candidates first
    candidate = np.take_along_axis(class_probs, order, axis=1) > 0      # (K, ranks)
    iou = iou_matrix(boxes[boxes_in_play])
    overlaps = iou[order[:, :, None], order[:, None, :]] > np.float32(nms_iou)  # NaN compares False
    alive = candidate.copy()
    for i in range(ranks - 1):
        alive[:, i + 1:] &= ~(overlaps[:, i, i + 1:] & alive[:, i, None])
    lost_class, lost_rank = np.nonzero(candidate & ~alive)
    keep[boxes_in_play[order[lost_class, lost_rank]], classes[lost_class]] = False
    return keep


def decode(raw: np.ndarray, threshold: float = 0.2, nms_iou: float = 0.5, side: int = 7, num: int = 2,
           classes: int = 20, sqrt: bool = True) -> list:
    """Detections of one image, sorted by confidence (highest first)."""
    boxes, probs = decode_boxes(raw, side, num, classes, sqrt)
    probs = np.where(probs > np.float32(threshold), probs, np.float32(0))
    box_index, cls_index = np.nonzero(suppress(probs, boxes, nms_iou))
    confidence = probs[box_index, cls_index]
    order = np.argsort(-confidence, kind="stable")
    names = VOC_CLASSES if classes == len(VOC_CLASSES) else tuple(str(i) for i in range(classes))
    return [Detection(names[c], int(c), float(p), *map(float, boxes[b]))
            for b, c, p in zip(box_index[order], cls_index[order], confidence[order])]
