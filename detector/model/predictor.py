"""One frame through preprocess -> engine -> decode, with each stage timed."""
from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from .decode import decode
from .engines import Engine
from .preprocess import to_blob


class Prediction(NamedTuple):
    raw: np.ndarray        # (outputs,) float32, the detection layer's input
    detections: list       # decode.Detection, sorted by confidence
    preprocess_ms: float
    inference_ms: float
    decode_ms: float


class Predictor:
    def __init__(self, engine: Engine, threshold: float = 0.2, nms_iou: float = 0.5, names: tuple | None = None):
        """names: class names for the model's class ids (--names); None keeps decode's names."""
        self.engine = engine
        self.spec = engine.model.spec
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.names = names

    def predict(self, frame_bgr: np.ndarray) -> Prediction:
        t0 = time.perf_counter()
        blob = to_blob(frame_bgr, self.spec.width, self.spec.height)
        t1 = time.perf_counter()
        raw = self.engine.infer(blob)[0]
        t2 = time.perf_counter()
        detection = self.spec.detection
        detections = decode(raw, self.threshold, self.nms_iou, detection.side, detection.num,
                            detection.classes, detection.sqrt)
        if self.names:
            detections = [d._replace(cls=self.names[d.cls_id]) for d in detections]
        t3 = time.perf_counter()
        return Prediction(raw, detections, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
