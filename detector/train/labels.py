"""The label data types every training module shares (one image's boxes, one training sample),
and the one place that reads and writes Darknet's label-file format.

Boxes are normalised to the image as in Darknet's label files: centre x, centre y, width, height,
each a fraction of the image's width or height. A label file holds one `class cx cy w h` line per
box; blank lines are allowed; an image without objects has an empty file. Beside labels/NAME.txt,
what Darknet cannot hold lives in JSON sidecars: NAME.detections.json (collect: the model's
confidences) and NAME.review.json (the labelling page: review mark and undo history).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DETECTIONS_SUFFIX = ".detections.json"
REVIEW_SUFFIX = ".review.json"


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


def format_label_lines(labels: LabelBoxes) -> str:
    """The label file's text: one `class cx cy w h` line per box, six decimals."""
    return "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n"
                   for c, (x, y, w, h) in zip(labels.class_ids, labels.boxes_norm.astype(np.float64)))


def coordinate_problem(values) -> str | None:
    """Why normalised coordinates cannot be in a label file, or None when they can."""
    outside = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if outside:
        return f"coordinates must be normalised to the image, between 0 and 1, found {outside[0]!r}"
    return None


def parse_label_text(text: str, class_count: int) -> tuple:
    """(LabelBoxes of the valid lines, [(line number, problem), ...]) of a label file's text."""
    class_ids, boxes, problems = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            problems.append((number, f"expected 5 fields 'class cx cy w h', found {len(fields)}: {line.strip()!r}"))
            continue
        try:
            class_id = int(fields[0])
        except ValueError:
            problems.append((number, f"class id must be a whole number, found {fields[0]!r}"))
            continue
        if not 0 <= class_id < class_count:
            problems.append((number, f"class id {class_id} is out of range: this dataset has {class_count} "
                                     f"classes (ids 0 to {class_count - 1})"))
            continue
        values = []
        for item in fields[1:]:
            try:
                values.append(float(item))
            except ValueError:
                problems.append((number, f"coordinates must be numbers, found {item!r}"))
                break
        if len(values) != 4:
            continue
        problem = coordinate_problem(values)
        if problem:
            problems.append((number, problem))
            continue
        class_ids.append(class_id)
        boxes.append(values)
    return LabelBoxes(np.array(class_ids, np.int32), np.array(boxes, np.float32).reshape(-1, 4)), problems


def sidecar_path(label_path: Path, suffix: str) -> Path:
    """labels/NAME.txt -> labels/NAME<suffix>."""
    return label_path.with_name(label_path.stem + suffix)
