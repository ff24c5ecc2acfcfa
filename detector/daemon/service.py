"""`robot-detector run`: wires capture -> predictor -> tracker -> publisher / debug stream.

This module only connects the parts and keeps the books (sequence numbers, state, statistics);
each part lives in its own module.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from robot_client import protocol

from .capture import LatestFrameCapture, describe_source, source_kind
from .config import Config
from ..model.classnames import class_names_for
from ..model.engines import create_engine
from ..errors import EX_CONFIG, UserError
from ..model.network import planted_model
from ..model.predictor import Predictor
from .publish import Publisher
from .sdnotify import Notifier
from .stream import DebugStream
from .tracker import TargetTracker
from ..model.weights import load_model, shipped_specs

log = logging.getLogger(__name__)

STALL_S = 0.8               # no new frame for this long while running -> camera_lost
DEMO_PERSON = (0.62, 0.51, 0.16, 0.64)  # where the synthetic clip's figure stands (x, y, w, h)


class Stats:
    """Rolling capture->publish latency and processing rate."""

    def __init__(self, window: int = 100):
        self.latencies_ms = deque(maxlen=window)
        self.inference_ms = deque(maxlen=window)
        self.publish_times = deque(maxlen=window)
        self.frames = 0

    def add(self, t_capture: float, t_publish: float, inference_ms: float) -> None:
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


def person_message(seq: int, frame, t_publish: float, target, target_class: str = "person") -> dict:
    """The `person` topic; it carries "cls" when it follows another class than person (--target-class)."""
    frame_h, frame_w = frame.image_bgr.shape[:2]
    message = {"v": protocol.VERSION, "seq": seq, "t_capture": frame.t_capture, "t_publish": t_publish,
               "frame_w": frame_w, "frame_h": frame_h, "found": target is not None}
    if target_class != "person":
        message["cls"] = target_class
    if target is None:
        message.update(dict.fromkeys(protocol.PERSON_TARGET_FIELDS))
    else:
        message.update(x=round(target.x, 6), y=round(target.y, 6), w=round(target.w, 6), h=round(target.h, 6),
                       area=round(target.w * target.h, 6), offset_x=round(2 * target.x - 1, 6),
                       confidence=round(target.confidence, 6))
    return message


def detections_message(seq: int, frame, t_publish: float, detections) -> dict:
    frame_h, frame_w = frame.image_bgr.shape[:2]
    return {"v": protocol.VERSION, "seq": seq, "t_capture": frame.t_capture, "t_publish": t_publish,
            "frame_w": frame_w, "frame_h": frame_h, "detections": [d.to_dict() for d in detections]}


def load_pipeline_model(config: Config):
    if config.demo:
        return planted_model(shipped_specs()["yolov1-tiny"], [DEMO_PERSON])
    return load_model(config.weights, config.cfg)


class Service:
    def __init__(self, config: Config, model=None):
        """`model`: an already loaded Model (benchmarks); by default it comes from `config`."""
        self.config = config
        self.source = "synthetic" if config.demo else config.source
        if source_kind(self.source) == "file" and not Path(self.source).is_file():
            raise UserError(f"video source {self.source} does not exist: expected a camera index (0), a video "
                            "file, an rtsp:// or http:// URL, or 'synthetic'", EX_CONFIG)
        try:
            self.model = model or load_pipeline_model(config)
            names = class_names_for(self.model.spec, config.names)
            engine = create_engine(self.model, config.engine, config.device)
        except UserError as error:
            # Under systemd a bad model or device must not be retried forever: a person must act.
            raise UserError(str(error), EX_CONFIG) from None
        self.target_id = names.index(config.target_class)
        self.predictor = Predictor(engine, config.threshold, config.nms, names)
        self.tracker = TargetTracker(config.track_iou, config.track_grace_s, config.smoothing)
        self.stats = Stats()
        self.state = "starting"
        self.stop_requested = threading.Event()
        self.notifier = Notifier()
        self.publisher = Publisher(config.pub, config.send_hwm)
        self.stream = None
        try:
            if config.http_address:
                self.stream = DebugStream(*config.http_address, config.jpeg_quality).start()
        except UserError:
            self.publisher.close()
            raise
        self.capture = LatestFrameCapture(self.source, config.loop)
        self._t_status = 0.0

    # --- status ---
    def status_message(self) -> dict:
        engine = self.predictor.engine
        return {"v": protocol.VERSION, "t": time.time(), "state": self.state, "fps": round(self.stats.fps, 2),
                "latency_ms": self.stats.latency(), "frames": self.stats.frames, "dropped": self.capture.dropped,
                "engine": engine.name, "device": engine.device, "demo": self.config.demo}

    def publish_status(self) -> None:
        status = self.status_message()
        self.publisher.send(protocol.STATUS, status)
        if self.stream:
            self.stream.set_status(status, self.state == "running")
        self._t_status = time.monotonic()

    def set_state(self, state: str) -> None:
        if state != self.state:
            log.info("state: %s -> %s", self.state, state)
            self.state = state
            self.notifier.notify(f"STATUS={state}, {self.stats.frames} frames")
            self.publish_status()

    # --- the frame loop ---
    def process(self, frame) -> None:
        config = self.config
        prediction = self.predictor.predict(frame.image_bgr)
        persons = [d for d in prediction.detections if d.cls_id == self.target_id]
        target = self.tracker.update(persons, frame.t_capture)
        published = [d for d in prediction.detections if not config.classes or d.cls in config.classes]
        seq = self.stats.frames
        t_publish = time.time()
        self.publisher.send(protocol.PERSON, person_message(seq, frame, t_publish, target, config.target_class))
        self.publisher.send(protocol.DETECTIONS, detections_message(seq, frame, t_publish, published))
        self.stats.add(frame.t_capture, t_publish, prediction.inference_ms)
        if self.stream:  # a reference only: annotation and encoding happen in the stream's thread
            self.stream.offer(seq, frame.image_bgr, prediction.detections, target.detection if target else None)

    def run(self) -> int:
        config = self.config
        self._install_signal_handlers()
        log.info("model %s from %s; engine %s on %s; source %s; publishing on %s%s",
                 self.model.name, self.model.source, self.predictor.engine.name, self.predictor.engine.device,
                 describe_source(self.source), self.publisher.endpoint,
                 f"; debug stream http://{self.config.http}/" if self.stream else "")
        self.publish_status()
        self.capture.start()
        t_last_frame = time.monotonic()
        try:
            while not self.stop_requested.is_set():
                frame = self.capture.next_frame(timeout=0.1)
                now = time.monotonic()
                if frame is None:
                    if self.capture.lost or (self.state == "running" and now - t_last_frame > STALL_S):
                        self.set_state("camera_lost")
                else:
                    self.process(frame)
                    t_last_frame = now
                    if self.stats.frames == 1:
                        self.notifier.notify("READY=1", f"STATUS=running, {self.stats.frames} frame processed")
                    self.set_state("running")
                self.notifier.watchdog()
                if time.monotonic() - self._t_status >= config.status_interval_s:
                    self.publish_status()
                if config.max_frames and self.stats.frames >= config.max_frames:
                    break
        finally:
            self.shutdown()
        return 0

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
