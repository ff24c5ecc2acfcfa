"""The label data types every training module shares: one image's boxes, and one training sample.

Boxes are normalised to the image as in Darknet's label files: centre x, centre y, width, height,
each a fraction of the image's width or height.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LabelBoxes:
    class_ids: np.ndarray   # (N,) int32
    boxes_norm: np.ndarray  # (N, 4) float32: cx, cy, w, h in [0, 1]
    weights: np.ndarray = field(default=None)  # (N,) float32 loss weight: 1, or mixup's lambda / 1 - lambda

    def __post_init__(self):
        object.__setattr__(self, "class_ids", np.asarray(self.class_ids, np.int32).reshape(-1))
        object.__setattr__(self, "boxes_norm", np.asarray(self.boxes_norm, np.float32).reshape(-1, 4))
        weights = np.ones(len(self.class_ids), np.float32) if self.weights is None else self.weights
        object.__setattr__(self, "weights", np.asarray(weights, np.float32).reshape(-1))
        if not len(self.class_ids) == len(self.boxes_norm) == len(self.weights):
            raise ValueError("class_ids, boxes_norm and weights must have one entry per box")

    def __len__(self) -> int:
        return len(self.class_ids)

    @classmethod
    def empty(cls) -> "LabelBoxes":
        return cls(np.zeros(0, np.int32), np.zeros((0, 4), np.float32))


@dataclass(frozen=True)
class Sample:
    image_bgr: np.ndarray  # (H, W, 3) uint8, as OpenCV reads it
    labels: LabelBoxes
    path: str = ""         # where the image came from, for error messages
