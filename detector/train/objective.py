"""Darknet's YOLO v1 detection-layer objective as a Chainer function of the network's raw outputs.

Darknet's forward_detection_layer writes `delta` = minus the gradient of a sum of
1/2 * scale * (target - output)^2 terms. Choosing the targets needs the current predictions (which
box is responsible, and its IoU when rescoring), so targets and per-term scales are built on the
host without autograd; the loss itself is then one differentiable expression on NumPy or CuPy,
divided by the batch size so that its gradient is exactly -delta / batch.
"""
from __future__ import annotations

from typing import NamedTuple

from ..model import chainer_compat  # noqa: F401  (before chainer)
import chainer
import chainer.functions as F
import numpy as np

from ..model.cfg import DetectionLayer

MIN_BOX_SIZE = 0.005  # Darknet drops label boxes narrower or lower than this


class TruthGrid(NamedTuple):
    """One batch's labels laid out on the detection grid, as Darknet's fill_truth_region does."""
    is_object: np.ndarray  # (B, cells) bool
    class_ids: np.ndarray  # (B, cells) int
    boxes: np.ndarray      # (B, cells, 4) float32: x, y offset within the cell, w, h of the image
    weights: np.ndarray    # (B, cells) float32: the label box's loss weight (mixup), 0 where empty


def truth_grid(labels: list, detection: DetectionLayer) -> TruthGrid:
    """`labels`: one LabelBoxes per image. The first box written to a cell wins (Darknet shuffles
    the label lines first, so callers shuffle)."""
    side, batch = detection.side, len(labels)
    grid = TruthGrid(np.zeros((batch, side * side), bool), np.zeros((batch, side * side), np.int64),
                     np.zeros((batch, side * side, 4), np.float32), np.zeros((batch, side * side), np.float32))
    for b, boxes in enumerate(labels):
        for class_id, (cx, cy, w, h), weight in zip(boxes.class_ids, boxes.boxes_norm, boxes.weights):
            if w < MIN_BOX_SIZE or h < MIN_BOX_SIZE:
                continue
            # A centre exactly on the right or bottom edge belongs to the last cell, not outside.
            col, row = min(int(cx * side), side - 1), min(int(cy * side), side - 1)
            cell = row * side + col
            if grid.is_object[b, cell]:
                continue
            grid.is_object[b, cell] = True
            grid.class_ids[b, cell] = class_id
            grid.boxes[b, cell] = (cx * side - col, cy * side - row, w, h)
            grid.weights[b, cell] = weight
    return grid


def _split(raw: np.ndarray, detection: DetectionLayer) -> tuple:
    """(B, outputs) -> class scores (B, cells, classes), confidences (B, cells, num), coords (B, cells, num, 4)."""
    cells, classes, num = detection.side ** 2, detection.classes, detection.num
    batch = raw.shape[0]
    class_scores = raw[:, :cells * classes].reshape(batch, cells, classes)
    confidence = raw[:, cells * classes:cells * (classes + num)].reshape(batch, cells, num)
    coords = raw[:, cells * (classes + num):].reshape(batch, cells, num, 4)
    return class_scores, confidence, coords


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of centre-size boxes (..., 4) as Darknet's box_iou computes it (no overlap: 0)."""
    overlap_w = np.minimum(a[..., 0] + a[..., 2] / 2, b[..., 0] + b[..., 2] / 2) - \
        np.maximum(a[..., 0] - a[..., 2] / 2, b[..., 0] - b[..., 2] / 2)
    overlap_h = np.minimum(a[..., 1] + a[..., 3] / 2, b[..., 1] + b[..., 3] / 2) - \
        np.maximum(a[..., 1] - a[..., 3] / 2, b[..., 1] - b[..., 3] / 2)
    intersection = np.where((overlap_w < 0) | (overlap_h < 0), 0, overlap_w * overlap_h)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(intersection > 0, intersection / union, 0).astype(np.float32)


class BatchStatistics(NamedTuple):
    """What Darknet's v1 detection layer prints per batch, from the same outputs and IoUs as the
    cost: means over the `count` cells that hold a label box (None when there are none), and
    `any_obj` over every confidence of the batch. Mixup weights do not enter (Darknet has none)."""
    avg_iou: float | None  # the responsible box's IoU with its truth
    pos_cat: float | None  # the class score of the true class
    all_cat: float | None  # every class score in those cells
    pos_obj: float | None  # the responsible box's confidence
    any_obj: float         # every box's confidence, object cells or not
    count: int             # cells that hold a label box

    def as_dict(self, digits: int = 6) -> dict:
        return {name: (round(value, digits) if isinstance(value, float) else value)
                for name, value in self._asdict().items()}


class Targets(NamedTuple):
    """Per-output targets and the scale of each squared-error term (0: no term)."""
    target: np.ndarray  # (B, outputs) float32
    scale: np.ndarray   # (B, outputs) float32
    iou: np.ndarray     # (B, cells) float32: the responsible box's IoU with its truth (0 where empty)
    statistics: BatchStatistics


def build_targets(raw: np.ndarray, grid: TruthGrid, detection: DetectionLayer) -> Targets:
    """Darknet's delta rules, vectorised over the batch. `raw`: (B, outputs) host array."""
    side = detection.side
    raw = np.asarray(raw, np.float32)
    class_scores, confidence, coords = _split(raw, detection)
    target, scale = np.zeros_like(raw), np.zeros_like(raw)
    t_class, t_conf, t_coords = _split(target, detection)
    s_class, s_conf, s_coords = _split(scale, detection)

    # Every confidence is pushed towards 0 ...
    s_conf[...] = detection.noobject_scale
    # ... and in a cell with an object, every class score towards its one-hot truth.
    obj = grid.is_object
    weight = grid.weights[..., None]
    s_class[...] = np.where(obj[..., None], detection.class_scale * weight, 0)
    t_class[...] = np.arange(detection.classes) == grid.class_ids[..., None]

    # The responsible box: highest IoU with the truth, or, when no box overlaps it, lowest RMSE.
    # Both are measured in cell units for x, y, as Darknet divides both boxes by side.
    predicted = coords.copy()
    predicted[..., :2] /= side
    if detection.sqrt:
        predicted[..., 2:] = predicted[..., 2:] ** 2
    truth = grid.boxes.copy()
    truth[..., :2] /= side
    iou = _iou(predicted, truth[:, :, None, :])                               # (B, cells, num)
    rmse = np.sqrt(((predicted - truth[:, :, None, :]) ** 2).sum(axis=-1))
    responsible = np.where(iou.max(axis=-1) > 0, iou.argmax(axis=-1), rmse.argmin(axis=-1))
    b_index, cell_index = np.nonzero(obj)
    n_index = responsible[b_index, cell_index]
    best_iou = iou[b_index, cell_index, n_index]
    w = grid.weights[b_index, cell_index]

    s_conf[b_index, cell_index, n_index] = detection.object_scale * w
    t_conf[b_index, cell_index, n_index] = best_iou if detection.rescore else 1.0
    coord_target = grid.boxes[b_index, cell_index].copy()
    if detection.sqrt:
        coord_target[:, 2:] = np.sqrt(coord_target[:, 2:])
    t_coords[b_index, cell_index, n_index] = coord_target
    s_coords[b_index, cell_index, n_index] = (detection.coord_scale * w)[:, None]
    responsible_iou = np.zeros(obj.shape, np.float32)
    responsible_iou[b_index, cell_index] = best_iou
    statistics = _statistics(class_scores[b_index, cell_index], t_class[b_index, cell_index],
                             confidence[b_index, cell_index, n_index], best_iou, confidence)
    return Targets(target, scale, responsible_iou, statistics)


def _statistics(object_class_scores: np.ndarray, object_class_truth: np.ndarray, responsible_confidence: np.ndarray,
                responsible_iou: np.ndarray, confidence: np.ndarray) -> BatchStatistics:
    """The first four arguments hold one row per object cell, in the same order (the class
    truth one-hot, as the class targets are)."""
    count = len(responsible_iou)
    any_obj = float(confidence.mean(dtype=np.float64))
    if not count:
        return BatchStatistics(None, None, None, None, any_obj, 0)
    true_class = (object_class_scores * object_class_truth).sum(axis=-1, dtype=np.float64)
    return BatchStatistics(float(responsible_iou.mean(dtype=np.float64)), float(true_class.mean()),
                           float(object_class_scores.mean(dtype=np.float64)),
                           float(responsible_confidence.mean(dtype=np.float64)), any_obj, count)


def detection_loss(output: chainer.Variable, labels: list, detection: DetectionLayer) -> tuple:
    """The batch mean of Darknet's v1 detection cost. Returns (loss Variable, Targets)."""
    xp = chainer.backend.get_array_module(output)
    raw = chainer.backend.CpuDevice().send(output.array)
    targets = build_targets(raw, truth_grid(labels, detection), detection)
    target, scale = xp.asarray(targets.target), xp.asarray(targets.scale)
    difference = output - target
    loss = F.sum(scale * difference * difference) * (0.5 / output.shape[0])
    return loss, targets
