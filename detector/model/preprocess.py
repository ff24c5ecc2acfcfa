"""Frame to network input, as Darknet prepares it: RGB, stretched to the input size with bilinear
interpolation (no letterbox), planar, values in [0, 1]. Range changes such as the 2015 model's
[-1, 1] belong to the network's crop layer, not here."""
from __future__ import annotations

import cv2
import numpy as np


def to_blob(frame_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 BGR frame -> (1, 3, height, width) float32 RGB blob in [0, 1]."""
    return cv2.dnn.blobFromImage(frame_bgr, 1.0 / 255.0, (width, height), swapRB=True, crop=False)
