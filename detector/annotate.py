"""Drawing detections on a frame, for `detect --annotate` and the debug stream."""
from __future__ import annotations

import cv2
import numpy as np

from .model.decode import Detection

BOX_BGR = (255, 160, 0)
TARGET_BGR = (0, 0, 255)
TEXT_BGR = (255, 255, 255)


def draw_detections(frame_bgr: np.ndarray, detections, target: Detection | None = None,
                    lines=()) -> np.ndarray:
    """A copy of the frame with every detection boxed and labelled, `target` highlighted, and
    `lines` of text (fps, latency, state) in the top-left corner."""
    canvas = frame_bgr.copy()
    frame_h, frame_w = canvas.shape[:2]
    scale = max(1.0, frame_w / 640)  # keep labels readable on large photos
    font, thin, thick = 0.5 * scale, max(1, round(scale)), max(2, round(2 * scale))
    for detection in detections:
        is_target = target is not None and detection == target
        colour = TARGET_BGR if is_target else BOX_BGR
        left, top, right, bottom = detection.pixel_box(frame_w, frame_h)
        cv2.rectangle(canvas, (left, top), (right, bottom), colour, thick + 1 if is_target else thick)
        label = f"{detection.cls} {detection.confidence:.2f}" + (" TARGET" if is_target else "")
        (text_w, text_h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, thin)
        label_top = max(0, top - text_h - 6)
        cv2.rectangle(canvas, (left, label_top), (left + text_w + 4, label_top + text_h + 6), colour, -1)
        cv2.putText(canvas, label, (left + 2, label_top + text_h + 2), cv2.FONT_HERSHEY_SIMPLEX, font,
                    TEXT_BGR, thin, cv2.LINE_AA)
    for i, line in enumerate(lines):
        origin = (8, int((22 + 22 * i) * scale))
        cv2.putText(canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thin + 2, cv2.LINE_AA)
        cv2.putText(canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, TEXT_BGR, thin, cv2.LINE_AA)
    return canvas
