"""`robot-detector train`: Darknet-exact YOLO v1 training in Chainer, on NumPy or CuPy.

One iteration: the next `batch` images of a shuffled pass over the dataset (a new order every
pass), each augmented and turned into the network input exactly as inference does; the
batch-mean detection cost (objective.py); one optimizer step. The output is a Darknet .weights file, saved atomically
at checkpoints, at the end, and when SIGINT/SIGTERM stops the run.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model import chainer_compat  # noqa: F401  (before chainer)
import chainer

from ..errors import EX_CONFIG, UserError
from ..model.cfg import NetworkSpec, load_spec
from ..model.classnames import class_names_for
from ..model.engines import device_context, resolve
from ..model.predictor import Predictor
from ..model.preprocess import to_blob
from ..model.weight_formats import read_header, save_darknet
from ..model.weights_store import load_model
from .augment import AugmentParams, make_augmenter
from .dataset import load_dataset
from .evaluate import EVAL_NMS_IOU, EVAL_THRESHOLD, evaluate_detections
from .labels import LabelBoxes, Sample
from .objective import detection_loss
from .optimizers import Adam, DarknetSGD
from .trainable_net import TrainableNet, darknet_random_model

log = logging.getLogger(__name__)

# Defaults measured on the generated shapes task (README, "Training"): from random initialisation
# Adam at 1e-3 learns where Darknet-typical SGD barely moves; fine-tuning uses the same.
DEFAULT_OPTIMIZER = "adam"
DEFAULT_ADAM_LR = 1e-3
# Adam's schedule: the last tenth of the run at a tenth of the rate, like the final `scales=.1`
# step of Darknet's cfgs (measured on the shapes task: +0.06 mAP over a constant rate).
ADAM_FINAL_FRACTION = 0.1
ADAM_FINAL_SCALE = 0.1
DEFAULT_ITERATIONS = 1000
CHECKPOINT_EVERY_S = 120.0
DEFAULT_CFG = "yolov1-tiny"


@dataclass(frozen=True)
class TrainOptions:
    dataset: str
    out: str | None = None
    cfg: str | None = None
    weights: str | None = None
    names: str | None = None
    iterations: int | None = None   # default: the cfg's max_batches, else DEFAULT_ITERATIONS
    batch: int = 8                  # measured: per image, 8 learned faster than 16 (README)
    optimizer: str = DEFAULT_OPTIMIZER
    lr: float | None = None         # default: Adam 1e-3; SGD the cfg's learning_rate and policy
    momentum: float | None = None   # SGD; default the cfg's
    decay: float | None = None      # default the cfg's
    augment: str = "default"
    mixup: float = 0.0
    freeze: int = 0
    device: str = "cpu"
    seed: int = 0
    json: bool = False
    log_every: int = 10
    val: str | None = None          # held-out dataset, evaluated at the end (and every eval_every)
    eval_every: int = 0
    checkpoint_every_s: float = CHECKPOINT_EVERY_S


@dataclass(frozen=True)
class TrainResult:
    out: Path
    seen: int
    iterations: int     # completed in this run
    interrupted: str    # "" or the signal's name
    losses: tuple       # one per completed iteration
    evaluations: tuple  # (iteration, evaluate.Evaluation) on --val
    detections: tuple   # the last evaluation's detections per --val image (decode.Detection lists)


def _initial_model(options: TrainOptions):
    """(Model, seen) from --weights (and --cfg), or Darknet's random init of --cfg."""
    if options.weights:
        model = load_model(options.weights, options.cfg)
        path = Path(options.weights)
        with open(path, "rb") as f:
            is_darknet = f.read(4) != b"PK\x03\x04"
        return model, (read_header(path).seen if is_darknet else 0)
    spec = load_spec(options.cfg or DEFAULT_CFG)
    return darknet_random_model(spec, options.seed), 0


def _check_options(options: TrainOptions, spec: NetworkSpec) -> None:
    if options.optimizer not in ("sgd", "adam"):
        raise UserError(f"--optimizer must be sgd or adam, found '{options.optimizer}'", EX_CONFIG)
    if not 0 <= options.freeze < len(spec.layers) - 1:
        raise UserError(f"--freeze must be between 0 and {len(spec.layers) - 2} for cfg '{spec.name}' "
                        f"({len(spec.layers)} layers, the last is the detection layer), found {options.freeze}", EX_CONFIG)
    trainable = [i for i in range(options.freeze, len(spec.layers)) if spec.parameter_shapes(i)]
    if not trainable:
        raise UserError(f"--freeze {options.freeze} leaves no layer with parameters to train", EX_CONFIG)
    for name in ("lr", "momentum", "decay", "mixup"):
        value = getattr(options, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"--{name} must be a finite number >= 0, found {value}", EX_CONFIG)


def adam_learning_rate(iteration: int, iterations: int, base: float | None = None) -> float:
    """Adam's rate at `iteration` (0-based) of a run of `iterations`: `base` (default
    DEFAULT_ADAM_LR), then ADAM_FINAL_SCALE of it for the last ADAM_FINAL_FRACTION of the run."""
    rate = DEFAULT_ADAM_LR if base is None else base
    return rate * ADAM_FINAL_SCALE if iteration >= iterations * (1 - ADAM_FINAL_FRACTION) else rate


def _device(choice: str) -> str:
    return resolve("chainer", choice)[1]


class _Batches:
    """Draws, augments and converts batches on a background thread, one batch ahead."""

    def __init__(self, dataset, spec: NetworkSpec, options: TrainOptions, rng):
        self.dataset, self.spec, self.rng, self.batch = dataset, spec, rng, options.batch
        detection, training = spec.detection, spec.training
        params = AugmentParams(spec.width, spec.height, jitter=detection.jitter, saturation=training.saturation,
                               exposure=training.exposure, hue=training.hue)
        self.augment = make_augmenter(options.augment, params, rng, options.mixup)
        self.order = []
        self.queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="train-batches", daemon=True)
        self.thread.start()

    def _next_index(self) -> int:
        if not self.order:
            self.order = list(self.rng.permutation(len(self.dataset)))
        return int(self.order.pop())

    def _sample(self) -> Sample:
        sample = self.dataset[self._next_index()]
        partner = self.dataset[self._next_index()] if self.augment.wants_partner else None
        sample = self.augment(sample, partner)
        labels = sample.labels
        order = self.rng.permutation(len(labels))  # Darknet shuffles label lines: which box wins a cell
        return Sample(sample.image_bgr, LabelBoxes(labels.class_ids[order], labels.boxes_norm[order],
                                                   labels.weights[order]), sample.path)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                samples = [self._sample() for _ in range(self.batch)]
                blob = np.concatenate([to_blob(s.image_bgr, self.spec.width, self.spec.height) for s in samples])
                item = (blob, [s.labels for s in samples])
                while not self.stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except Exception as error:  # surfaced in the training thread, which owns error reporting
            self.queue.put(error)

    def next(self) -> tuple:
        item = self.queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class _Progress:
    """A one-line bar on a terminal (stderr); JSON lines on stdout with --json."""

    def __init__(self, total: int, as_json: bool, log_every: int):
        self.total, self.as_json, self.log_every = total, as_json, log_every
        self.tty = sys.stderr.isatty() and not as_json
        self.t_start = time.perf_counter()
        self.images = 0

    def step(self, iteration: int, loss: float, lr: float, images: int) -> None:
        self.images += images
        elapsed = time.perf_counter() - self.t_start
        rate = self.images / elapsed if elapsed > 0 else 0.0
        last = iteration == self.total
        if self.as_json and (iteration % self.log_every == 0 or last):
            print(json.dumps({"iteration": iteration, "loss": round(loss, 6), "lr": lr,
                              "images_per_s": round(rate, 2)}), flush=True)
        elif self.tty:
            done = iteration / self.total
            eta_s = elapsed / done - elapsed if done else 0.0
            bar = "#" * int(30 * done)
            sys.stderr.write(f"\r[{bar:<30}] {iteration}/{self.total} loss {loss:.4f} "
                             f"{rate:.1f} img/s ETA {int(eta_s // 60)}:{int(eta_s % 60):02d}")
            if last:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif iteration % max(self.log_every, self.total // 20 or 1) == 0 or last:
            log.info("iteration %d/%d loss %.4f lr %g %.1f images/s", iteration, self.total, loss, lr, rate)


class _NetEngine:
    """The network being trained, seen as an inference engine (test mode, no autograd), so that
    evaluation uses the daemon's own preprocess and decode."""

    def __init__(self, net: TrainableNet, model):
        self.net, self.model = net, model

    def infer(self, blob: np.ndarray) -> np.ndarray:
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            output = self.net(self.net.xp.asarray(blob)).array
        return chainer.backend.CpuDevice().send(output).astype(np.float32, copy=False)


def _evaluate(net: TrainableNet, model, dataset) -> tuple:
    """(Evaluation, detections per image) with the daemon's decode at the evaluation threshold."""
    predictor = Predictor(_NetEngine(net, model), EVAL_THRESHOLD, EVAL_NMS_IOU, dataset.class_names)
    detections = [predictor.predict(dataset[i].image_bgr).detections for i in range(len(dataset))]
    return evaluate_detections(list(dataset.labels), detections, dataset.class_names), detections


class _StopSignals:
    """SIGINT/SIGTERM end the run after the current iteration (which is then saved)."""

    def __init__(self):
        self.received = ""
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.received = signal.Signals(signum).name

    def __exit__(self, *_):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def train(options: TrainOptions) -> TrainResult:
    model, seen = _initial_model(options)
    spec = model.spec
    _check_options(options, spec)
    names = class_names_for(spec, options.names) if options.names else None
    dataset = load_dataset(options.dataset, names)
    if len(dataset.class_names) != spec.detection.classes:
        raise UserError(f"{dataset.source} has {len(dataset.class_names)} classes ({', '.join(dataset.class_names)}) "
                        f"but cfg '{spec.name}' predicts {spec.detection.classes}: set classes={len(dataset.class_names)} "
                        "in the cfg's [detection] section (and the [connected] output to match), or pass the "
                        "dataset that cfg was made for", EX_CONFIG)
    val = load_dataset(options.val, dataset.class_names) if options.val else None
    iterations = options.iterations or spec.training.max_batches or DEFAULT_ITERATIONS
    out = Path(options.out or f"{spec.name}-trained.weights")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist", EX_CONFIG)
    device = _device(options.device)

    # gpu:N: every CuPy call of the run (parameters, batches, optimizer state) on device N
    with device_context(device):
        net = TrainableNet(model, options.freeze)
        if device != "cpu":
            net.to_device(f"@cupy:{device.split(':')[1]}")  # moved once; per step only the batch goes
        parameters = net.trainable_parameters()
        training = spec.training
        decay = training.decay if options.decay is None else options.decay
        if options.optimizer == "sgd":
            momentum = training.momentum if options.momentum is None else options.momentum
            optimizer = DarknetSGD(parameters, momentum, decay)
            learning_rate = lambda i: training.learning_rate_at(i, options.lr)  # noqa: E731
        else:
            optimizer = Adam(parameters, decay)
            learning_rate = lambda i: adam_learning_rate(i, iterations, options.lr)  # noqa: E731
        log.info("training %s (%s) on %s: %d images, %d iterations of %d, %s, device %s, first %d layers frozen",
                 spec.name, model.source, dataset.source, len(dataset), iterations, options.batch,
                 options.optimizer, device, options.freeze)

        rng = np.random.default_rng(options.seed)
        batches = _Batches(dataset, spec, options, rng)
        progress = _Progress(iterations, options.json, options.log_every)
        losses, evaluations, detections = [], [], []
        t_saved = time.monotonic()

        def evaluate(iteration: int) -> None:
            evaluation, found = _evaluate(net, model, val)
            evaluations.append((iteration, evaluation))
            detections[:] = found
            if options.json:
                print(json.dumps({"iteration": iteration, "map": round(evaluation.map, 6),
                                  "ap": {k: round(v, 6) for k, v in evaluation.ap.items()}}), flush=True)
            else:
                log.info("iteration %d: mAP %.4f on %s", iteration, evaluation.map, val.source)

        def save() -> None:
            save_darknet(net.to_model(f"trained from {model.source}"), out, seen)

        try:
            with _StopSignals() as stop, chainer.using_config("train", True):
                for iteration in range(iterations):
                    if stop.received:
                        break
                    blob, labels = batches.next()
                    output = net(net.xp.asarray(blob))
                    loss, _ = detection_loss(output, labels, spec.detection)
                    value = float(loss.array)
                    if not math.isfinite(value):
                        raise UserError(f"the loss became {value} at iteration {iteration + 1}: training diverged. "
                                        f"{out} keeps the last good checkpoint; try a lower --lr.")
                    net.cleargrads()
                    loss.backward()
                    rate = learning_rate(iteration)
                    optimizer.update(rate)
                    seen += options.batch
                    losses.append(value)
                    progress.step(iteration + 1, value, rate, options.batch)
                    if time.monotonic() - t_saved > options.checkpoint_every_s:
                        save()
                        t_saved = time.monotonic()
                    if val is not None and options.eval_every and (iteration + 1) % options.eval_every == 0 \
                            and iteration + 1 < iterations:
                        evaluate(iteration + 1)
                save()
            if val is not None and not stop.received:
                evaluate(len(losses))
        finally:
            batches.close()
    if stop.received:
        log.warning("stopped by %s after %d iterations; saved %s (seen %d)", stop.received, len(losses), out, seen)
    if options.json:
        extra = {"interrupted": stop.received} if stop.received else {}
        if evaluations:
            extra["map"] = round(evaluations[-1][1].map, 6)
        print(json.dumps({"done": not stop.received, "out": str(out), "seen": seen, "iterations": len(losses),
                          **extra}), flush=True)
    return TrainResult(out, seen, len(losses), stop.received, tuple(losses), tuple(evaluations), tuple(detections))
