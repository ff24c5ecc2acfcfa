"""`robot-detector collect`: the robot's own view as training data.

Frames from any source (camera, file, URL, synthetic) are saved at most once every `every_s`
seconds into a dataset folder in Darknet's layout (images/NNNNNN.jpg, labels/NNNNNN.txt,
classes.txt), each label file pre-filled with the current model's detections, for a person to
correct in a YOLO-format labelling tool. Existing files are never overwritten: numbering continues
after the highest number present, and every file is created exclusively.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import cv2
import numpy as np

from ..capture import LatestFrameCapture, describe_source, source_kind
from ..errors import EX_CONFIG, UserError
from ..model.classnames import read_names
from ..model.predictor import Predictor

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
FRAME_TIMEOUT_S = 0.2


def label_lines(detections) -> str:
    """Darknet label lines for detections, boxes clipped to the image (labels must lie in [0, 1])."""
    lines = []
    for d in detections:
        left, top = max(0.0, d.x - d.w / 2), max(0.0, d.y - d.h / 2)
        right, bottom = min(1.0, d.x + d.w / 2), min(1.0, d.y + d.h / 2)
        if right <= left or bottom <= top:
            continue
        lines.append(f"{d.cls_id} {(left + right) / 2:.6f} {(top + bottom) / 2:.6f} "
                     f"{right - left:.6f} {bottom - top:.6f}\n")
    return "".join(lines)


class DatasetWriter:
    """Adds numbered image/label pairs to a dataset folder without touching what is there."""

    def __init__(self, out: Path, class_names: tuple):
        self.out = Path(out)
        self.images, self.labels = self.out / "images", self.out / "labels"
        classes_file = self.out / "classes.txt"
        found = read_names(classes_file) if classes_file.exists() else None
        if found is not None and found != tuple(class_names):
            raise UserError(f"{classes_file} lists {', '.join(found)}, but the model's classes are "
                            f"{', '.join(class_names)}: collect into another folder, or use the same --names",
                            EX_CONFIG)
        try:
            self.images.mkdir(parents=True, exist_ok=True)
            self.labels.mkdir(parents=True, exist_ok=True)
            if found is None:
                with open(classes_file, "x", encoding="utf-8") as f:
                    f.write("".join(f"{name}\n" for name in class_names))
        except OSError as error:
            raise UserError(f"cannot create the dataset folder {self.out}: {error.strerror}", EX_CONFIG) from None
        numbers = [int(p.stem) for folder in (self.images, self.labels) for p in folder.iterdir() if p.stem.isdigit()]
        self.next_number = max(numbers, default=-1) + 1

    def add(self, image_bgr: np.ndarray, detections) -> Path:
        ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise UserError("cannot encode a frame as JPEG")
        while True:
            name = f"{self.next_number:06d}"
            self.next_number += 1
            image_path, label_path = self.images / f"{name}.jpg", self.labels / f"{name}.txt"
            try:
                with open(label_path, "x", encoding="utf-8") as f:  # claims the number
                    f.write(label_lines(detections))
            except FileExistsError:
                continue  # someone else's file: leave it, take the next number
            # Written aside, then linked into place: the image appears whole or not at all, and
            # the link fails rather than replace a file that exists.
            partial = self.images / f".{name}.jpg.partial"
            partial.write_bytes(data.tobytes())
            try:
                os.link(partial, image_path)
            except FileExistsError:
                label_path.unlink()
                continue
            finally:
                partial.unlink()
            return image_path


def run_collect(predictor: Predictor, class_names: tuple, source: str, out, every_s: float,
                max_frames: int | None) -> int:
    """Save frames until `max_frames`, the end of a file source, or SIGINT/SIGTERM. Returns the count."""
    writer = DatasetWriter(Path(out), class_names)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    capture = LatestFrameCapture(source).start()
    log.info("collecting from %s into %s, one frame every %gs%s", describe_source(source), writer.out, every_s,
             f", {max_frames} frames" if max_frames else " (Ctrl-C stops)")
    saved, t_last = 0, None
    try:
        while not stop.is_set() and (max_frames is None or saved < max_frames):
            frame = capture.next_frame(timeout=FRAME_TIMEOUT_S)
            if frame is None:
                if capture.lost and source_kind(source) == "file":
                    break  # the file has ended; it would only play again
                continue
            if t_last is not None and frame.t_capture - t_last < every_s:
                continue
            t_last = frame.t_capture
            detections = predictor.predict(frame.image_bgr).detections
            path = writer.add(frame.image_bgr, detections)
            saved += 1
            log.info("saved %s with %d pre-filled label(s)%s", path, len(detections),
                     "".join(f", {d.cls} {d.confidence:.2f}" for d in detections[:5]))
    finally:
        capture.stop()
    print(f"collected {saved} frame(s) into {writer.out}; correct the labels in a YOLO-format labelling "
          "tool, then train on the folder")
    return saved
