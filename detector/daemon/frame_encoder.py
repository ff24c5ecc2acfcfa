"""The debug stream's frames: the frame loop hands off its newest frame, one encoder thread
annotates and JPEG-encodes it once for every viewer, and only while someone is watching.

The hand-off never blocks on viewers: a newer frame replaces the one waiting, and a slow viewer
skips to the newest JPEG when it is ready, so no browser can slow detection.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import cv2

from ..annotate import draw_detections

log = logging.getLogger(__name__)


class FrameEncoder:
    """`overlay_lines(seq)`: the text drawn on frame `seq` (fps, latency, engine)."""

    def __init__(self, overlay_lines: Callable[[int], list], jpeg_quality: int = 80):
        self.overlay_lines = overlay_lines
        self.jpeg_quality = jpeg_quality
        self.viewers = 0
        self.frames_encoded = 0
        self.encode_errors = 0
        self.t_last_offer = 0.0     # monotonic seconds of the newest hand-off (0: none yet)
        self._condition = threading.Condition()
        self._pending = None        # the newest offered frame (seq, frame_bgr, detections, target detection)
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self._tried_seq = -1        # the newest frame the encoder worked on, drawn or not
        self._stopping = threading.Event()

    def start(self) -> "FrameEncoder":
        threading.Thread(target=self._encode_loop, name="jpeg-encoder", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()

    def offer(self, seq: int, frame_bgr, detections, target_detection) -> None:
        """Called by the frame loop: cheap (a reference is kept), never blocks on viewers."""
        with self._condition:
            self._pending = (seq, frame_bgr, detections, target_detection)
            self.t_last_offer = time.monotonic()
            if self.viewers:
                self._condition.notify_all()

    @contextmanager
    def viewer(self) -> Iterator[Iterator[bytes]]:
        """A viewer for the length of the `with` block (frames are encoded while there is one): yields
        an iterator of the newest JPEGs, each once, that ends when the encoder stops."""
        with self._condition:
            self.viewers += 1
            self._condition.notify_all()
        try:
            yield self._newest_jpegs()
        finally:
            with self._condition:
                self.viewers -= 1

    def _newest_jpegs(self) -> Iterator[bytes]:
        seq = -1
        while not self._stopping.is_set():
            jpeg, seq = self._next_jpeg(seq, timeout=1.0)
            if jpeg is not None:
                yield jpeg

    def _next_jpeg(self, after_seq: int, timeout: float):
        """(jpeg, seq) newer than `after_seq`, or (None, after_seq) after `timeout` seconds."""
        with self._condition:
            self._condition.wait_for(lambda: self._jpeg_seq != after_seq or self._stopping.is_set(), timeout)
            if self._jpeg_seq == after_seq or self._jpeg is None:
                return None, after_seq
            return self._jpeg, self._jpeg_seq

    def snapshot(self) -> bytes | None:
        """The newest frame as a JPEG (encoded now when no viewer had it encoded), None before any."""
        with self._condition:
            pending, jpeg, seq = self._pending, self._jpeg, self._jpeg_seq
        if pending is None:
            return None
        return jpeg if pending[0] == seq else self._encode(pending)

    def _encode(self, pending) -> bytes | None:
        """The annotated JPEG, or None when this frame cannot be drawn (the stream skips it)."""
        seq, frame_bgr, detections, target = pending
        try:
            canvas = draw_detections(frame_bgr, detections, target, self.overlay_lines(seq))
            ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise ValueError("cv2.imencode failed")
        except Exception as error:  # e.g. a non-finite box: lose this frame, never the encoder
            self.encode_errors += 1
            if self.encode_errors == 1:
                log.error("debug stream: frame %d cannot be drawn (%s: %s); such frames are skipped and counted "
                          "in /metrics (robot_detector_stream_encode_errors_total)", seq, type(error).__name__, error)
            log.debug("frame %d not drawn", seq, exc_info=True)
            return None
        self.frames_encoded += 1
        return jpeg.tobytes()

    def _encode_loop(self) -> None:
        while not self._stopping.is_set():
            with self._condition:
                while not self._stopping.is_set() and (self.viewers == 0 or self._pending is None
                                                       or self._pending[0] == self._tried_seq):
                    self._condition.wait(0.5)
                pending = self._pending
            if self._stopping.is_set():
                return
            jpeg = self._encode(pending)
            with self._condition:
                self._tried_seq = pending[0]
                if jpeg is not None:
                    self._jpeg, self._jpeg_seq = jpeg, pending[0]
                    self._condition.notify_all()
