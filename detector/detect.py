"""`robot-detector detect`: one-shot detection on still images."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .annotate import draw_detections
from .errors import UserError
from .model.predictor import Predictor


def read_image(path) -> np.ndarray:
    frame_bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame_bgr is None:
        reason = "no such file" if not Path(path).exists() else "not an image OpenCV can decode (expected JPEG, PNG, BMP, ...)"
        raise UserError(f"cannot read image {path}: {reason}")
    return frame_bgr


def annotated_path(out: Path, image: Path, several: bool) -> Path:
    return out.with_name(f"{out.stem}-{image.stem}{out.suffix}") if several else out


def run_detect(predictor: Predictor, images: list, as_json: bool, save_raw=None, annotate=None) -> None:
    frames = [read_image(path) for path in images]  # every image is checked before any work
    raws = []
    for path, frame_bgr in zip(images, frames):
        prediction = predictor.predict(frame_bgr)
        raws.append(prediction.raw)
        frame_h, frame_w = frame_bgr.shape[:2]
        if as_json:
            print(json.dumps({"image": str(path), "width": frame_w, "height": frame_h,
                              "detections": [d.to_dict() for d in prediction.detections]}))
        else:
            print(f"{path}: {frame_w}x{frame_h}, {len(prediction.detections)} detection(s), "
                  f"inference {prediction.inference_ms:.1f} ms")
            for d in prediction.detections:
                left, top, right, bottom = d.pixel_box(frame_w, frame_h)
                print(f"  {d.cls:<12} {d.confidence:.3f}  centre ({d.x:.3f}, {d.y:.3f})  size {d.w:.3f}x{d.h:.3f}"
                      f"  pixels [{left}, {top}, {right}, {bottom}]")
        if annotate:
            out = annotated_path(Path(annotate), Path(path), len(images) > 1)
            if not cv2.imwrite(str(out), draw_detections(frame_bgr, prediction.detections)):
                raise UserError(f"cannot write annotated image {out}: check the folder exists and the "
                                "extension is an image type (.png, .jpg)")
    if save_raw:
        stacked = raws[0] if len(raws) == 1 else np.stack(raws)
        try:
            np.save(save_raw, stacked.astype(np.float32))
        except OSError as error:
            raise UserError(f"cannot write raw outputs to {save_raw}: {error.strerror}") from None
