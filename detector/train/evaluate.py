"""Detection quality: Pascal VOC average precision per class and its mean (mAP).

The rules, as in the VOC2010+ devkit (VOCevaldet.m):
- detections of one class from all images are ranked by confidence, highest first; equal
  confidences keep dataset order (image order, then the decoder's order), as Matlab's stable sort does;
- a detection is a true positive when its best-overlapping truth box of that class in the same
  image has IoU >= `iou` and no earlier detection took that truth; a second detection of a taken
  truth, or one overlapping no truth enough, is a false positive;
- AP is the area under the precision/recall curve with precision made monotone (all points
  interpolated, not VOC2007's 11 points);
- a class with no truth boxes in the dataset has no AP (recall is undefined): it is left out of
  `ap` and of the mean, as the devkit leaves such classes out; a class with truth boxes but no
  detections has AP 0.
IoU is computed on normalised boxes (no +1 pixel convention). Detections come from the daemon's
own decode (detector.model.predictor) at threshold 0.005 with per-class NMS 0.5.

`evaluate_engine(dataset, engine)` scores an engine on a dataset; `detect_all` (what the trainer
calls on held-out data) gives the detections. `engine` is any object with `.model.spec` and
`.infer(blob) -> (N, outputs)`, such as an inference Engine or a wrapper around a network being trained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..model.predictor import Predictor

EVAL_THRESHOLD = 0.005
EVAL_NMS_IOU = 0.5


@dataclass(frozen=True)
class Evaluation:
    ap: dict              # class name -> AP, only classes with truth boxes, in class-id order
    truths: dict          # class name -> number of truth boxes
    images: int
    iou: float
    engine: str | None = None     # the engine and precision that ran (`evaluate`), when known
    precision: str | None = None

    @property
    def map(self) -> float:
        return float(np.mean(list(self.ap.values())))

    def to_json(self) -> str:
        ran = {"engine": self.engine, "precision": self.precision} if self.engine else {}
        return json.dumps({"map": round(self.map, 6), "ap": {name: round(v, 6) for name, v in self.ap.items()},
                           "images": self.images, "iou": self.iou, **ran})

    def table(self) -> str:
        lines = [f"{'class':<16} {'truths':>7} {'AP':>7}"]
        lines += [f"{name:<16} {self.truths[name]:>7} {ap:>7.4f}" for name, ap in self.ap.items()]
        lines.append(f"{'mAP':<16} {sum(self.truths.values()):>7} {self.map:>7.4f}"
                     f"   ({self.images} images, IoU >= {self.iou:g}"
                     + (f"; {self.engine} {self.precision})" if self.engine else ")"))
        return "\n".join(lines)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (cx, cy, w, h) box with each of (k, 4) boxes, float64."""
    low = np.maximum(box[:2] - box[2:] / 2, boxes[:, :2] - boxes[:, 2:] / 2)
    high = np.minimum(box[:2] + box[2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2)
    intersection = np.prod(np.clip(high - low, 0.0, None), axis=1)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC2010+): the area under the monotone precision envelope."""
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def class_ap(truth_boxes: list, detections: list, iou: float) -> float:
    """truth_boxes: per image, (k, 4) boxes of this class; detections: (image index, confidence,
    box) in dataset order. Returns AP (the class has at least one truth)."""
    positives = sum(len(boxes) for boxes in truth_boxes)
    order = sorted(range(len(detections)), key=lambda i: -detections[i][1])  # stable: ties keep order
    taken = [np.zeros(len(boxes), bool) for boxes in truth_boxes]
    true_positive = np.zeros(len(order))
    for rank, index in enumerate(order):
        image, _, box = detections[index]
        boxes = truth_boxes[image]
        if len(boxes) == 0:
            continue
        overlaps = iou_one_to_many(np.asarray(box, np.float64), boxes)
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou and not taken[image][best]:
            taken[image][best] = True
            true_positive[rank] = 1
    hits = np.cumsum(true_positive)
    ranks = np.arange(1, len(order) + 1)
    return average_precision(hits / positives, hits / ranks) if len(order) else 0.0


def evaluate_detections(truths: list, detections: list, class_names, iou: float = 0.5) -> Evaluation:
    """truths: LabelBoxes per image; detections: per image, a list of decode.Detection (or any
    object with cls_id, confidence, x, y, w, h)."""
    if len(truths) != len(detections):
        raise ValueError("one list of detections per image is needed")
    ap, counts = {}, {}
    for class_id, name in enumerate(class_names):
        truth_boxes = [labels.boxes_norm[labels.class_ids == class_id].astype(np.float64) for labels in truths]
        positives = sum(len(boxes) for boxes in truth_boxes)
        if positives == 0:
            continue
        found = [(image, d.confidence, (d.x, d.y, d.w, d.h))
                 for image, image_detections in enumerate(detections) for d in image_detections if d.cls_id == class_id]
        ap[name] = class_ap(truth_boxes, found, iou)
        counts[name] = positives
    if not ap:
        raise UserError("the dataset has no labelled objects of the model's classes: there is nothing to "
                        "measure average precision against")
    return Evaluation(ap, counts, len(truths), iou)


def evaluate_engine(dataset, engine, iou: float = 0.5, progress=None) -> Evaluation:
    """Run `engine` over every image of `dataset` with the daemon's decode and score the result.
    `progress`, if given, is called with (images done, images in all)."""
    spec = engine.model.spec
    if len(dataset.class_names) != spec.detection.classes:
        raise UserError(f"the dataset {dataset.source} has {len(dataset.class_names)} classes "
                        f"({', '.join(dataset.class_names)}) but the model predicts {spec.detection.classes}: "
                        "pass --names with the model's class names")
    return evaluate_detections(list(dataset.labels), detect_all(dataset, engine, progress=progress),
                               dataset.class_names, iou)


def detect_all(dataset, engine, names: tuple | None = None, progress=None) -> list:
    """The detections of every image of `dataset`, a list per image, with the daemon's decode at the
    evaluation threshold (`names`: as the Predictor's)."""
    predictor = Predictor(engine, EVAL_THRESHOLD, EVAL_NMS_IOU, names)
    detections = []
    for index in range(len(dataset)):
        detections.append(predictor.predict(dataset[index].image_bgr).detections)
        if progress:
            progress(index + 1, len(dataset))
    return detections


def run_evaluate(dataset_spec, spec, iou: float, as_json: bool) -> Evaluation:
    """`robot-detector evaluate` of the predictor `spec` (a model.builder.PredictorSpec) describes. The
    dataset is checked before the model is loaded, so that a bad dataset fails fast; --names (if given)
    must fit the model, and the dataset must use the same names."""
    from dataclasses import replace
    from ..model.builder import build_predictor
    from ..model.classnames import read_names
    from .dataset import load_dataset
    dataset = load_dataset(dataset_spec, read_names(spec.names) if spec.names else None)
    engine = build_predictor(replace(spec, require_names=False)).engine
    evaluation = replace(evaluate_engine(dataset, engine, iou), engine=engine.name, precision=engine.precision)
    print(evaluation.to_json() if as_json else evaluation.table())
    return evaluation
