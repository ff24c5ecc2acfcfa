"""`robot-detector collect`: the robot's own view as training data.

Frames from any source (camera, file, URL, synthetic) are saved into a dataset folder in Darknet's
layout (images/NNNNNN.jpg, labels/NNNNNN.txt, classes.txt), each label file pre-filled with the
current model's detections, for a person to correct with `robot-detector label`. Which frames are
saved (`select`):
- all: every frame, at most one per `every_s` seconds;
- uncertain: frames whose best detection of the target class scores within a band (the frames the
  model is unsure about; the band may reach below the daemon's threshold);
- lost: frames within `around_s` seconds of each moment the daemon's tracker lost its target.
In every mode frames closer than `every_s` to the last saved one, and frames that look like the
last saved one (near-duplicates), are skipped.

Beside each label file, labels/NNNNNN.detections.json keeps what the model said (confidences, the
frame's index in the source), which the Darknet .txt cannot hold. Existing files are never
overwritten: numbering continues after the highest number present, every number is claimed by
creating its label file exclusively, and an image appears whole or not at all.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..capture import LatestFrameCapture, describe_source, source_kind
from ..daemon.tracker import PersonTracker
from ..errors import EX_CONFIG, UserError
from ..model.classnames import read_names
from ..model.predictor import Predictor
from .labels import DETECTIONS_SUFFIX, LabelBoxes, format_label_lines, sidecar_path

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
FRAME_TIMEOUT_S = 0.2
THUMBNAIL_SIZE = (32, 24)   # near-duplicates are compared at this size, in grey


def clipped_labels(detections) -> tuple:
    """(LabelBoxes, confidences) of detections with boxes clipped to the image (labels must lie in
    [0, 1]); a box entirely outside is left out."""
    class_ids, boxes, confidences = [], [], []
    for d in detections:
        left, top = max(0.0, d.x - d.w / 2), max(0.0, d.y - d.h / 2)
        right, bottom = min(1.0, d.x + d.w / 2), min(1.0, d.y + d.h / 2)
        if right <= left or bottom <= top:
            continue
        class_ids.append(d.cls_id)
        boxes.append([(left + right) / 2, (top + bottom) / 2, right - left, bottom - top])
        confidences.append(float(d.confidence))
    return LabelBoxes(np.array(class_ids, np.int32), np.array(boxes, np.float64).reshape(-1, 4)), confidences


def label_lines(detections) -> str:
    """Darknet label lines for detections, clipped to the image."""
    return format_label_lines(clipped_labels(detections)[0])


def detections_record(detections, **about) -> dict:
    """The sidecar's content: each written box (as the .txt has it) with its confidence, and `about`."""
    labels, confidences = clipped_labels(detections)
    boxes = [{"class_id": int(c), "box": [float(f"{v:.6f}") for v in box], "confidence": round(p, 6)}
             for c, box, p in zip(labels.class_ids, labels.boxes_norm.astype(np.float64), confidences)]
    return {**about, "boxes": boxes}


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

    def add(self, image_bgr: np.ndarray, detections, about: dict | None = None) -> Path:
        """Saves the image, its label file and its detections sidecar (with `about` in it)."""
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
            sidecar = sidecar_path(label_path, DETECTIONS_SUFFIX)
            sidecar.write_text(json.dumps(detections_record(detections, **(about or {}))) + "\n", encoding="utf-8")
            # Written aside, then linked into place: the image appears whole or not at all, and
            # the link fails rather than replace a file that exists.
            partial = self.images / f".{name}.jpg.partial"
            partial.write_bytes(data.tobytes())
            try:
                os.link(partial, image_path)
            except FileExistsError:
                label_path.unlink()
                sidecar.unlink()
                continue
            finally:
                partial.unlink()
            return image_path


class Seen(NamedTuple):
    """A frame with what the model found in it."""
    frame: object          # capture.Frame
    detections: list


@dataclass(frozen=True)
class Selection:
    """Which frames `collect` saves (see the module docstring)."""
    mode: str = "all"
    target_id: int = 14             # the class `uncertain` and `lost` look at (VOC person)
    band: tuple = (0.1, 0.4)        # uncertain: best target score in (low, high]
    around_s: float = 2.0           # lost: seconds before and after each loss
    min_change: float = 0.01        # mean grey difference to the last saved frame, fraction of full scale


class UncertainFrames:
    """Frames whose best target-class detection scores within the band."""

    def __init__(self, selection: Selection):
        self.target_id, (self.low, self.high) = selection.target_id, selection.band

    def offer(self, seen: Seen) -> list:
        scores = [d.confidence for d in seen.detections if d.cls_id == self.target_id]
        return [seen] if scores and self.low < max(scores) <= self.high else []


class LostTarget:
    """Frames within `around_s` of each moment the tracker lost its target: the ones before from a
    buffer, the ones after as they come. The moment is the first frame on which the tracker, after
    holding the target through its grace period, reports none."""

    def __init__(self, selection: Selection):
        self.target_id, self.around_s = selection.target_id, selection.around_s
        self.tracker = PersonTracker(appearance=False)  # the daemon's rules; colours need not decide here
        self.recent = collections.deque()
        self.had_target = False
        self.save_until = float("-inf")
        self.losses = 0

    def offer(self, seen: Seen) -> list:
        t = seen.frame.t_monotonic
        self.recent.append(seen)
        while t - self.recent[0].frame.t_monotonic > self.around_s:
            self.recent.popleft()
        target = self.tracker.update(t, [d for d in seen.detections if d.cls_id == self.target_id]).target
        lost_now = self.had_target and not target.found
        self.had_target = target.found
        if lost_now:
            self.losses += 1
            log.info("target lost at frame %d; saving the frames %gs around it", seen.frame.index, self.around_s)
            self.save_until = t + self.around_s
            return list(self.recent)
        return [seen] if t <= self.save_until else []


class AllFrames:
    def __init__(self, selection: Selection):
        pass

    def offer(self, seen: Seen) -> list:
        return [seen]


def thumbnail(image_bgr: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


class Counts:
    def __init__(self):
        self.examined = self.saved = self.not_selected = self.duplicates = 0

    def summary(self) -> str:
        return (f"{self.examined} frame(s) examined: {self.saved} saved, {self.not_selected} not selected, "
                f"{self.duplicates} near-duplicate(s) skipped")


def run_collect(predictor: Predictor, class_names: tuple, source: str, out, every_s: float,
                max_frames: int | None, selection: Selection = Selection()) -> int:
    """Save frames until `max_frames`, the end of a file source, or SIGINT/SIGTERM. Returns the count."""
    writer = DatasetWriter(Path(out), class_names)
    selector = {"all": AllFrames, "uncertain": UncertainFrames, "lost": LostTarget}[selection.mode](selection)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    capture = LatestFrameCapture(source).start()
    log.info("collecting %s frames from %s into %s, at most one every %gs%s", selection.mode,
             describe_source(source), writer.out, every_s, f", {max_frames} frames" if max_frames else " (Ctrl-C stops)")
    counts = Counts()
    t_last, index_last, thumb_last = None, -1, None
    try:
        while not stop.is_set() and (max_frames is None or counts.saved < max_frames):
            frame = capture.next_frame(timeout=FRAME_TIMEOUT_S)
            if frame is None:
                if capture.lost and source_kind(source) == "file":
                    break  # the file has ended; it would only play again
                continue
            # the tracker must see every frame; the other modes need not run the model too soon
            if selection.mode != "lost" and t_last is not None and frame.t_capture - t_last < every_s:
                continue
            counts.examined += 1
            chosen = selector.offer(Seen(frame, predictor.predict(frame.image_bgr).detections))
            if not chosen:
                counts.not_selected += 1
            for seen in chosen:
                if max_frames is not None and counts.saved >= max_frames:
                    break
                if seen.frame.index <= index_last or (t_last is not None and seen.frame.t_capture - t_last < every_s):
                    continue
                thumb = thumbnail(seen.frame.image_bgr)
                if thumb_last is not None and float(np.abs(thumb - thumb_last).mean()) < selection.min_change:
                    counts.duplicates += 1
                    continue
                about = {"source": describe_source(source), "frame_index": seen.frame.index,
                         "t_capture": seen.frame.t_capture, "select": selection.mode, "threshold": predictor.threshold}
                path = writer.add(seen.frame.image_bgr, seen.detections, about)
                counts.saved += 1
                t_last, index_last, thumb_last = seen.frame.t_capture, seen.frame.index, thumb
                log.info("saved %s (frame %d) with %d pre-filled label(s)%s", path, seen.frame.index,
                         len(seen.detections), "".join(f", {d.cls} {d.confidence:.2f}" for d in seen.detections[:5]))
    finally:
        capture.stop()
    print(f"collected {counts.saved} frame(s) into {writer.out} ({counts.summary()}); review the labels with "
          f"`robot-detector label {writer.out}`, then train on the folder")
    return counts.saved
