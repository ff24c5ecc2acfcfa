"""Frame capture in its own thread that always offers the newest frame.

A robot must act on what the camera sees now, so there is no queue: each new frame replaces the
one waiting, and replaced frames are counted as dropped. A source that fails is reopened with
backoff; the capture reports `camera_lost` until frames flow again.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import NamedTuple

import cv2
import numpy as np


log = logging.getLogger(__name__)

REOPEN_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)


class Frame(NamedTuple):
    image_bgr: np.ndarray
    index: int        # counts frames read from the source, from 0
    t_capture: float  # Unix seconds when the frame was read


class SyntheticSource:
    """A generated clip: a walking figure and moving shapes over a gradient, paced like a camera.

    The figure stands where the demo weights plant their person, so the demo stream is coherent.
    """

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0):
        self.width, self.height, self.fps = width, height, fps
        self.count = 0
        ramp = np.linspace(40, 120, width, dtype=np.uint8)
        self.background = np.dstack([np.tile(ramp, (height, 1))] * 3)
        self.background[..., 0] //= 2

    def isOpened(self) -> bool:  # noqa: N802 (the cv2.VideoCapture interface)
        return True

    def read(self):
        t = self.count / self.fps
        self.count += 1
        frame = self.background.copy()
        w, h = self.width, self.height
        cx = int(w * (0.62 + 0.015 * np.sin(t)))
        cv2.circle(frame, (cx, int(h * 0.25)), int(h * 0.06), (170, 190, 230), -1)                 # head
        cv2.rectangle(frame, (cx - int(w * 0.07), int(h * 0.31)), (cx + int(w * 0.07), int(h * 0.6)), (60, 60, 200), -1)
        cv2.rectangle(frame, (cx - int(w * 0.05), int(h * 0.6)), (cx + int(w * 0.05), int(h * 0.83)), (90, 50, 40), -1)
        bx = int((t * 80) % w)
        cv2.rectangle(frame, (bx, int(h * 0.75)), (bx + 50, int(h * 0.75) + 50), (0, 200, 255), -1)
        cv2.circle(frame, (int(w * 0.2), int(h * (0.5 + 0.3 * np.sin(t * 1.3)))), 30, (50, 220, 50), -1)
        return True, frame

    def get(self, prop) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


def source_kind(source: str) -> str:
    """'synthetic', 'camera' (an index like 0), 'url' (rtsp://, http://...) or 'file'."""
    if source == "synthetic":
        return "synthetic"
    if source.isdigit():
        return "camera"
    return "url" if "://" in source else "file"


def open_source(source: str):
    """A cv2.VideoCapture-like object for a camera index, file, URL or 'synthetic'."""
    if source == "synthetic":
        return SyntheticSource()
    if not log.isEnabledFor(logging.DEBUG):
        # OpenCV's own warnings would repeat at every retry; we report the loss once
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    if source_kind(source) == "camera":
        capture = cv2.VideoCapture(int(source))
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer driver buffers: less latency behind the newest frame
        return capture
    return cv2.VideoCapture(source)


def describe_source(source: str) -> str:
    kind = source_kind(source)
    if kind == "synthetic":
        return "the synthetic clip"
    return f"camera {source} (/dev/video{source})" if kind == "camera" else source


class LatestFrameCapture:
    """Reads `source` in a background thread; `next_frame` returns each frame at most once."""

    def __init__(self, source: str, loop: bool = False):
        self.source = source
        self.loop = loop
        self.is_file = source_kind(source) == "file"
        # Files and the synthetic clip are played at their own frame rate, like a camera;
        # cameras and streams are read as fast as they deliver.
        self.pace = source_kind(source) in ("file", "synthetic")
        self.dropped = 0
        self.lost = False
        self._latest: Frame | None = None
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> "LatestFrameCapture":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout=2.0)

    def next_frame(self, timeout: float) -> Frame | None:
        """The newest frame not yet handed out, waiting up to `timeout` seconds for one."""
        with self._condition:
            if self._latest is None:
                self._condition.wait(timeout)
            frame, self._latest = self._latest, None
            return frame

    def _offer(self, frame: Frame) -> None:
        with self._condition:
            if self._latest is not None:
                self.dropped += 1
            self._latest = frame
            self._condition.notify_all()

    def _set_lost(self, lost: bool) -> None:
        if lost != self.lost:
            self.lost = lost
            if not lost:
                log.warning("video source %s is back", describe_source(self.source))
                return
            hint = ("is the camera plugged in, and may this user read it (the 'video' group)? "
                    "`ls /dev/video*` lists cameras" if source_kind(self.source) == "camera" else
                    "the file ended (use --loop to replay it)" if self.is_file else "is the stream reachable?")
            log.warning("video source %s lost or not opening: %s; retrying with backoff",
                        describe_source(self.source), hint)

    def _run(self) -> None:
        attempt, index = 0, 0
        while not self._stop.is_set():
            capture = open_source(self.source)
            if not capture.isOpened():
                capture.release()
                self._set_lost(True)
                self._stop.wait(REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)])
                attempt += 1
                continue
            fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
            period = 1.0 / fps if self.pace and 0 < fps < 1000 else 0.0
            next_due = time.monotonic()
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok or image is None:
                    if self.is_file and self.loop and index > 0:
                        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    break
                attempt = 0
                self._set_lost(False)
                self._offer(Frame(image, index, time.time()))
                index += 1
                if period:
                    next_due += period
                    self._stop.wait(max(0.0, next_due - time.monotonic()))
            capture.release()
            if not self._stop.is_set():
                self._set_lost(True)
                self._stop.wait(REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)])
                attempt += 1
