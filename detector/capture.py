"""Frame capture in its own thread that always offers the newest frame.

A robot must act on what the camera sees now, so there is no queue: each new frame replaces the
one waiting, and replaced frames are counted as dropped. A camera or stream that fails is reopened
with backoff (a camera by its path, so one that returns under a new /dev/videoN through its by-id
link is found again); the capture reports `camera_lost` until frames flow again. A camera or stream
whose picture stands still for `frozen_s` (detector.freeze) is lost too, and reopened likewise. A
video file is played once unless looping: a file that ended stays ended.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from typing import NamedTuple
from urllib.parse import urlsplit
from urllib.request import url2pathname

import cv2
import numpy as np

from .freeze import FreezeWatch

log = logging.getLogger(__name__)

REOPEN_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)
# Paths that name a V4L2 camera even while it is unplugged (it may come back under the same name).
CAMERA_PATH = re.compile(r"/dev/video\d+|/dev/v4l/.+")
# URL schemes of live network streams OpenCV's FFmpeg reads. A file: URL is a recording, played as a file.
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt",
                            "mms", "mmsh", "mmst"})


class Frame(NamedTuple):
    image_bgr: np.ndarray
    index: int          # counts frames read from the source, from 0
    t_capture: float    # Unix seconds when the frame was read (published; never used for durations)
    t_monotonic: float  # time.monotonic() when the frame was read: every duration is measured on it
    frozen: bool = False  # the source froze: this frame repeats a picture that has stood still for frozen_s


class CameraFormat(NamedTuple):
    """What a camera is asked for (None: the driver's default) or what its driver granted."""
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None

    def to_dict(self) -> dict:
        return self._asdict()


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


def _is_character_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)  # follows symlinks, as /dev/v4l/by-id/* are
    except OSError:
        return False


def source_kind(source: str) -> str:
    """'synthetic', 'camera' (an index like 0, or a V4L2 device path such as /dev/video0 or
    /dev/v4l/by-id/...), 'url' (a live stream: rtsp://, http://... of STREAM_SCHEMES) or 'file'
    (a path or a file: URL; anything else too, so that a missing one is refused as a missing file)."""
    if source == "synthetic":
        return "synthetic"
    if source.isdigit() or CAMERA_PATH.fullmatch(source) or _is_character_device(source):
        return "camera"
    scheme = urlsplit(source).scheme.lower() if "://" in source else ""
    return "url" if scheme in STREAM_SCHEMES else "file"


def file_path(source: str) -> str:
    """The local path a file: URL names (file:///videos/clip%20a.avi: /videos/clip a.avi); any other
    source as it is. OpenCV would open a file: URL as a stream, reopened at its end forever."""
    if not source.lower().startswith("file:"):
        return source
    return url2pathname(urlsplit(source).path)


def request_format(capture, wanted: CameraFormat) -> CameraFormat:
    """Ask an opened camera for `wanted` and return what its driver granted.

    FOURCC goes first: V4L2 picks the frame sizes and rates a camera offers per pixel format, so a
    size asked for before the format may be refused or reset by the format change.
    """
    if wanted.fourcc:
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*wanted.fourcc))
    if wanted.width:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, wanted.width)
    if wanted.height:
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, wanted.height)
    if wanted.fps:
        capture.set(cv2.CAP_PROP_FPS, wanted.fps)
    code = int(capture.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    fourcc = "".join(chr((code >> shift) & 0xFF) for shift in (0, 8, 16, 24)).strip("\0 ") if code else None
    return CameraFormat(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) or None,
                        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None,
                        round(float(capture.get(cv2.CAP_PROP_FPS)), 3) or None, fourcc or None)


def camera_device(source: str) -> int | str:
    """What to open for a camera source now: its index, or the device its path points to at this
    moment (a camera plugged back in may be another /dev/videoN behind the same by-id link)."""
    return int(source) if source.isdigit() else os.path.realpath(source)


def open_source(source: str):
    """A cv2.VideoCapture-like object for a camera index or path, file, URL or 'synthetic'."""
    if source == "synthetic":
        return SyntheticSource()
    if not log.isEnabledFor(logging.DEBUG):
        # OpenCV's own warnings would repeat at every retry; we report the loss once
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    if source_kind(source) == "camera":
        device = camera_device(source)  # resolved at every (re)open
        capture = cv2.VideoCapture(device, cv2.CAP_V4L2) if isinstance(device, str) else cv2.VideoCapture(device)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer driver buffers: less latency behind the newest frame
        return capture
    return cv2.VideoCapture(source)


def describe_source(source: str) -> str:
    kind = source_kind(source)
    if kind == "synthetic":
        return "the synthetic clip"
    if kind == "camera":
        return f"camera {source} (/dev/video{source})" if source.isdigit() else f"camera {source}"
    return source


class CaptureFailed(RuntimeError):
    """The capture thread died of an unexpected error: the camera is no longer read."""


class LatestFrameCapture:
    """Reads `source` in a background thread; `next_frame` returns each frame at most once.

    `camera_format`: what to ask a camera for; `granted` then holds what its driver gave.
    `opener`: how a source is opened (open_source; a stand-in only where no camera exists).
    `frozen_s`: how long the picture of a camera or stream may stand still before the source counts as
    lost; a file or the synthetic clip is played as it is.
    """

    def __init__(self, source: str, loop: bool = False, camera_format: CameraFormat = CameraFormat(),
                 opener=open_source, frozen_s: float = 1.0):
        self.source = file_path(source)
        self.kind = source_kind(self.source)
        self.loop = loop
        self.camera_format = camera_format
        self.opener = opener
        # Files and the synthetic clip are played at their own frame rate, like a camera;
        # cameras and streams are read as fast as they deliver.
        self.pace = self.kind in ("file", "synthetic")
        self.dropped = 0
        self.lost = False
        self.lost_reason: str | None = None  # "frozen" while the picture stands still, else None
        self.freeze = FreezeWatch(frozen_s) if self.kind in ("camera", "url") else None
        self.ended = False              # a video file was read to its end (and is not looped)
        self.granted: CameraFormat | None = None
        self.error: BaseException | None = None  # set when the thread died; next_frame raises then
        self.t_alive = time.monotonic()  # when the thread last came back from the source (read, open, wait)
        self._latest: Frame | None = None
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_guarded, name="capture", daemon=True)

    def start(self) -> "LatestFrameCapture":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout=2.0)

    def next_frame(self, timeout: float) -> Frame | None:
        """The newest frame not yet handed out, waiting up to `timeout` seconds for one.
        Raises CaptureFailed once the capture thread has died (no frame will ever come)."""
        with self._condition:
            if self._latest is None and self.error is None:
                self._condition.wait(timeout)
            frame, self._latest = self._latest, None
        if frame is None and self.error is not None:
            raise CaptureFailed(f"the capture thread for {describe_source(self.source)} failed: "
                                f"{type(self.error).__name__}: {self.error}")
        return frame

    def _offer(self, frame: Frame) -> None:
        with self._condition:
            if self._latest is not None:
                self.dropped += 1
            self._latest = frame
            self._condition.notify_all()

    def _set_lost(self, lost: bool, reason: str | None = None) -> None:
        if (lost, reason) != (self.lost, self.lost_reason):
            self.lost, self.lost_reason = lost, reason
            if not lost:
                log.warning("video source %s is back", describe_source(self.source))
                return
            if reason == "frozen":
                log.warning("video source %s froze: its picture has not changed for %.1f s (a hung capture "
                            "device, or a network camera resending its last picture); reopening it",
                            describe_source(self.source), self.freeze.frozen_s)
                return
            hint = ("is the camera plugged in, and may this user read it (the 'video' group)? "
                    "`ls /dev/video* /dev/v4l/by-id` lists cameras" if self.kind == "camera" else
                    "is the file a video OpenCV can read?" if self.kind == "file" else "is the stream reachable?")
            log.warning("video source %s lost or not opening: %s; retrying with backoff",
                        describe_source(self.source), hint)

    def _run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as error:  # noqa: B036 - whatever it was, the frame loop must learn of it
            log.debug("capture thread failed", exc_info=True)
            with self._condition:
                self.error = error
                self._condition.notify_all()

    def _open(self):
        capture = self.opener(self.source)
        if self.kind == "camera" and capture.isOpened():
            self.granted = request_format(capture, self.camera_format)
            log.info("camera %s: asked for %s, the driver granted %s", self.source,
                     _format_text(self.camera_format), _format_text(self.granted))
        return capture

    def _run(self) -> None:
        attempt, index = 0, 0
        while not self._stop.is_set():
            capture = self._open()
            self.t_alive = time.monotonic()
            if not capture.isOpened():
                capture.release()
                self._set_lost(True)
                self._stop.wait(REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)])
                self.t_alive = time.monotonic()
                attempt += 1
                continue
            if self.freeze and self.lost_reason != "frozen":
                self.freeze.reopened(time.monotonic())
            fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
            period = 1.0 / fps if self.pace and 0 < fps < 1000 else 0.0
            next_due = time.monotonic()
            reason = None  # why this opening is given up: None (a failed read) or "frozen"
            while not self._stop.is_set():
                ok, image = capture.read()
                self.t_alive = t_read = time.monotonic()
                if not ok or image is None:
                    if self.kind == "file" and self.loop and index > 0:
                        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    break
                if self.freeze and self.freeze.frozen(image, t_read):
                    if not self.lost:  # the frame loop learns of it from this one frame; no more come
                        self._set_lost(True, "frozen")
                        self._offer(Frame(image, index, time.time(), t_read, frozen=True))
                        index += 1
                    reason = "frozen"
                    break
                attempt = 0
                self._set_lost(False)
                self._offer(Frame(image, index, time.time(), t_read))
                index += 1
                if period:
                    next_due += period
                    self._stop.wait(max(0.0, next_due - time.monotonic()))
                    self.t_alive = time.monotonic()
            capture.release()
            if self.kind == "file" and index > 0:
                log.warning("video file %s ended after %d frames; it is not replayed (--loop replays it)",
                            self.source, index)
                self.ended = True
                self.lost = True
                return
            if not self._stop.is_set():
                self._set_lost(True, reason)
                self._stop.wait(REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)])
                self.t_alive = time.monotonic()
                attempt += 1


def _format_text(fmt: CameraFormat) -> str:
    parts = [f"{fmt.width or '?'}x{fmt.height or '?'}" if fmt.width or fmt.height else "",
             f"{fmt.fps:g} fps" if fmt.fps else "", fmt.fourcc or ""]
    return " ".join(part for part in parts if part) or "the driver's default"
