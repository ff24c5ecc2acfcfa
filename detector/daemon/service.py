"""`robot-detector run`: wires capture -> predictor -> tracker -> publisher / debug stream.

This module only connects the parts and keeps the books (sequence numbers, state, statistics);
each part lives in its own module.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from robot_client import protocol
from robot_client.sdnotify import Notifier

from ..capture import CameraFormat, CaptureFailed, LatestFrameCapture, describe_source, file_path, source_kind
from .config import Config
from ..model.builder import PredictorSpec, build_predictor, load
from ..errors import EX_CONFIG, EX_FAILURE, UserError
from ..model.network import planted_model
from .publish import Publisher, detections_message, person_message
from .stream import DebugStream
from .tracker import LOST, PersonTracker
from ..model.cfg import shipped_specs

log = logging.getLogger(__name__)

STALL_S = 0.8               # no new frame for this long while running -> camera_lost
CAPTURE_HUNG_S = 20.0       # a read or open of the source blocked this long: stop feeding the watchdog
DEMO_PERSON = (0.62, 0.51, 0.16, 0.64)  # where the synthetic clip's figure stands (x, y, w, h)


class Stats:
    """Rolling capture->publish latency and processing rate, on the monotonic clock."""

    def __init__(self, window: int = 100):
        self.latencies_ms = deque(maxlen=window)
        self.inference_ms = deque(maxlen=window)
        self.publish_times = deque(maxlen=window)
        self.frames = 0

    def add(self, t_capture: float, t_publish: float, inference_ms: float) -> None:
        """t_capture, t_publish: time.monotonic() seconds."""
        self.frames += 1
        self.latencies_ms.append((t_publish - t_capture) * 1e3)
        self.inference_ms.append(inference_ms)
        self.publish_times.append(t_publish)

    @property
    def fps(self) -> float:
        times = self.publish_times
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def latency(self) -> dict:
        if not self.latencies_ms:
            return {"p50": 0.0, "p95": 0.0}
        values = np.asarray(self.latencies_ms)
        return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


def finite_detections(detections) -> tuple:
    """(the detections whose numbers are all finite, how many were not). A non-finite box (a broken
    weights file, an engine fault) must neither reach a message nor stop the frame loop."""
    kept = [d for d in detections if all(math.isfinite(v) for v in (d.confidence, d.x, d.y, d.w, d.h))]
    return kept, len(detections) - len(kept)


def load_pipeline_model(config: Config):
    if config.demo:
        return planted_model(shipped_specs()["yolov1-tiny"], [DEMO_PERSON])
    return load(PredictorSpec.of(config))


class Service:
    def __init__(self, config: Config, model=None):
        """`model`: an already loaded Model (benchmarks); by default it comes from `config`."""
        self.config = config
        self.source = "synthetic" if config.demo else file_path(config.source)  # a file: URL is a file
        if source_kind(self.source) == "file" and not Path(self.source).is_file():
            raise UserError(f"video source {self.source} does not exist: expected a camera index (0), a video "
                            "file, an rtsp:// or http:// URL, or 'synthetic'", EX_CONFIG)
        try:
            self.model = model or load_pipeline_model(config)
            self.predictor = build_predictor(PredictorSpec.of(config), self.model)
        except UserError as error:
            # Under systemd a bad model or device must not be retried forever: a person must act.
            raise UserError(str(error), EX_CONFIG) from None
        self.target_id = self.predictor.names.index(config.target_class)
        self.tracker = PersonTracker(config.track_grace_s, config.relock_s, config.lock, config.smoothing,
                                     config.appearance)
        self.stats = Stats()
        self.state = "starting"
        self.reason: str | None = None  # why the state is what it is: "frozen" (camera_lost), else None
        self.stop_requested = threading.Event()
        self.notifier = Notifier()
        self.publisher = Publisher(config.pub, config.send_hwm)
        self.stream = None
        try:
            if config.http_address:
                self.stream = DebugStream(*config.http_address, config.jpeg_quality, config.http_token).start()
        except UserError:
            self.publisher.close()
            raise
        camera_format = CameraFormat(config.camera_width, config.camera_height, config.camera_fps, config.camera_fourcc)
        if camera_format != CameraFormat() and source_kind(self.source) != "camera":
            log.warning("--width/--height/--fps/--fourcc are asked of a camera; %s is not one, so they are ignored",
                        describe_source(self.source))
        self.capture = LatestFrameCapture(self.source, config.loop, camera_format, frozen_s=config.frozen_s)
        self.nonfinite = 0      # detections dropped because a number in them was not finite
        self._followed = None   # the track id followed in the last frame, None while nobody is
        self._hang_reported = False
        self._t_status = 0.0

    # --- status ---
    def status_message(self) -> dict:
        engine = self.predictor.engine
        return {"v": protocol.VERSION, "t": time.time(), "state": self.state, "fps": round(self.stats.fps, 2),
                "latency_ms": self.stats.latency(), "frames": self.stats.frames, "dropped": self.capture.dropped,
                "engine": engine.name, "device": engine.device, "demo": self.config.demo,
                "live": not self.config.demo and source_kind(self.source) in ("camera", "url"),
                "camera": self.capture.granted.to_dict() if self.capture.granted else None,
                "nonfinite": self.nonfinite, "reason": self.reason}

    def publish_status(self) -> None:
        status = self.status_message()
        self.publisher.send(protocol.STATUS, status)
        if self.stream:
            self.stream.set_status(status, self.state == "running")
        self._t_status = time.monotonic()

    def set_state(self, state: str, reason: str | None = None) -> None:
        if (state, reason) != (self.state, self.reason):
            log.info("state: %s -> %s%s", self.state, state, f" ({reason})" if reason else "")
            self.state, self.reason = state, reason
            self.notifier.notify(f"STATUS={state}, {self.stats.frames} frames")
            self.publish_status()

    # --- the frame loop ---
    def process(self, frame) -> None:
        config = self.config
        prediction = self.predictor.predict(frame.image_bgr)
        detections, nonfinite = finite_detections(prediction.detections)
        if nonfinite:
            if not self.nonfinite:
                log.warning("the model reported a box with a non-finite number; such detections are dropped "
                            "and counted in status.nonfinite (are the weights damaged?)")
            self.nonfinite += nonfinite
        persons = [d for d in detections if d.cls_id == self.target_id]
        if self.stream:  # the page's choice of whom to follow, made on an HTTP thread, applied here
            self.stream.choices.apply(self.tracker)
        tracked = self.tracker.update(frame.t_monotonic, persons, frame.image_bgr)
        self._log_target(tracked.target.track_id if tracked.target.found else None)
        track_ids = {id(d): track_id for d, track_id in zip(persons, tracked.track_ids)}
        published = [d for d in detections if not config.classes or d.cls in config.classes]
        seq = self.stats.frames
        t_publish = time.time()
        frame_size = frame.image_bgr.shape[1::-1]
        self.publisher.send(protocol.PERSON, person_message(seq, frame.t_capture, frame_size, t_publish, tracked.target,
                                                            config.target_class))
        self.publisher.send(protocol.DETECTIONS, detections_message(seq, frame.t_capture, frame_size, t_publish,
                                                                    published, track_ids))
        self.stats.add(frame.t_monotonic, time.monotonic(), prediction.inference_ms)
        if self.stream:  # a reference only: annotation and encoding happen in the stream's thread
            self.stream.offer(seq, frame.t_capture, frame.image_bgr, detections, tracked)

    def _log_target(self, track_id) -> None:
        """One log line per change of whom is followed (not per held frame)."""
        if track_id != self._followed:
            if track_id is None:
                log.info("target lost (track %d): nobody followed", self._followed)
            else:
                log.info("following track %d%s", track_id,
                         "" if self._followed is None else f" instead of track {self._followed}")
            self._followed = track_id

    def process_frozen(self, frame) -> None:
        """The source froze (capture.py): whoever its picture shows may have left long ago. The target
        is released at once, not after the tracker's grace, and `found: false` goes out stamped now."""
        self.tracker.release()
        self._log_target(None)
        seq = self.stats.frames
        self.stats.frames += 1  # seq counts handled frames; this one had no inference
        t_publish = time.time()
        frame_size = frame.image_bgr.shape[1::-1]
        self.set_state("camera_lost", "frozen")
        self.publisher.send(protocol.PERSON, person_message(seq, frame.t_capture, frame_size, t_publish, LOST,
                                                            self.config.target_class))
        self.publisher.send(protocol.DETECTIONS, detections_message(seq, frame.t_capture, frame_size, t_publish, [], {}))

    def run(self) -> int:
        config = self.config
        self._install_signal_handlers()
        log.info("model %s from %s; engine %s (%s) on %s; source %s; publishing on %s%s",
                 self.model.name, self.model.source, self.predictor.engine.name, self.predictor.engine.precision,
                 self.predictor.engine.device,
                 describe_source(self.source), self.publisher.endpoint,
                 f"; debug stream http://{self.config.http}/" if self.stream else "")
        self.publish_status()
        # Ready once the model is loaded: a missing camera is reported (camera_lost), not a failed
        # start that systemd would answer by reloading the model again and again.
        self.notifier.notify("READY=1", "STATUS=starting, model loaded")
        self.capture.start()
        min_period_s = 1.0 / config.max_fps if config.max_fps else 0.0
        t_last_frame = t_next_due = time.monotonic()
        try:
            while not self.stop_requested.is_set():
                self._feed_watchdog()
                if time.monotonic() - self._t_status >= config.status_interval_s:
                    self.publish_status()
                wait_s = t_next_due - time.monotonic()
                if wait_s > 0:  # --max-fps: the capture thread keeps draining; this loop rests
                    self.stop_requested.wait(min(wait_s, 0.1))
                    continue
                frame = self.capture.next_frame(timeout=0.1)
                now = time.monotonic()
                if frame is None:
                    if self.capture.lost or (self.state == "running" and now - t_last_frame > STALL_S):
                        self.set_state("camera_lost", self.capture.lost_reason)
                    continue
                if frame.frozen:
                    self.process_frozen(frame)
                    continue
                self.process(frame)
                t_last_frame = now
                t_next_due = now + min_period_s
                self.set_state("running")
                if config.max_frames and self.stats.frames >= config.max_frames:
                    break
        except CaptureFailed as error:
            # No frame will come again: feeding the watchdog now would hide a blind robot. Exit
            # non-zero so that systemd restarts the daemon (Restart=on-failure).
            log.error("%s; exiting so that the service manager restarts the daemon", error)
            return EX_FAILURE
        finally:
            self.shutdown()
        return 0

    def _feed_watchdog(self) -> None:
        """The watchdog is fed for the whole pipeline: not while the capture thread is stuck inside
        the driver (a hung read would otherwise leave a blind daemon alive forever)."""
        hung_s = time.monotonic() - self.capture.t_alive
        if hung_s < CAPTURE_HUNG_S or self.capture.ended:  # a file that ended is no hang: camera_lost says it
            self._hang_reported = False
            self.notifier.watchdog(time.monotonic())
        elif not self._hang_reported:
            self._hang_reported = True
            log.error("the capture thread has been stuck in %s for %.0f s; no longer feeding the watchdog, so that "
                      "the service manager restarts the daemon", describe_source(self.source), hung_s)

    def shutdown(self) -> None:
        self.notifier.notify("STOPPING=1")
        self.state = "stopping"
        self.capture.stop()
        self.publish_status()
        if self.stream:
            self.stream.stop()
        self.publisher.close()
        log.info("stopped after %d frames (%d dropped)", self.stats.frames, self.capture.dropped)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (e.g. by `bench --pipeline`): whoever runs us handles signals

        def request_stop(signum, _frame):
            log.info("%s: finishing the current frame, then stopping", signal.Signals(signum).name)
            self.stop_requested.set()
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)


def run_service(config: Config) -> int:
    return Service(config).run()
