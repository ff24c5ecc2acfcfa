"""`robot-detector train`: Darknet-exact YOLO v1 training in Chainer, on NumPy or CuPy.

One iteration: the next `batch` images of a shuffled pass over the dataset (a new order every
pass), each augmented and turned into the network input exactly as inference does; the
batch-mean detection cost (objective.py); one optimizer step. The output is a Darknet .weights file, saved atomically
at checkpoints, at the end, and when SIGINT/SIGTERM stops the run.

A run is composed of small pieces, each usable alone: `setup` (model, datasets, output, device),
`make_optimizer` (the optimizer and its learning-rate schedule), `_Batches` (the input pipeline),
`update` (one iteration), `Checkpoints` (timed and final saves), `run_iterations` (the loop) and
the records of report.py, which `train` hands to its `report` callable: the library never prints.
"""
from __future__ import annotations

import logging
import math
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model import chainer_compat  # noqa: F401  (before chainer)
import chainer

from ..errors import EX_CONFIG, UserError
from ..model.cfg import NetworkSpec, TrainingParams, load_spec
from ..model.classnames import class_names_for
from ..model.engines import device_context, resolve
from ..model.network import Model
from ..model.preprocess import to_blob
from ..model.weight_formats import is_seed_npz, read_header, save_darknet
from ..model.weights_store import load_model
from .augment import AugmentParams, make_augmenter
from .dataset import DecodedImages, load_dataset
from .evaluate import detect_all, evaluate_detections
from .labels import LabelBoxes, Sample
from .objective import BatchStatistics, detection_loss
from .optimizers import Adam, DarknetSGD
from .report import DoneRecord, EvaluationRecord, StepRecord, Throughput
from .trainable_net import FROZEN_ENGINES, TrainableNet, darknet_random_model

log = logging.getLogger(__name__)

# Defaults measured on the generated shapes task (docs/measurements/training.md): from random initialisation
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
DEFAULT_IMAGE_CACHE_MB = 256  # a few hundred camera frames: a fine-tuning set


@dataclass(frozen=True)
class TrainOptions:
    dataset: str
    out: str | None = None
    cfg: str | None = None
    weights: str | None = None
    names: str | None = None
    iterations: int | None = None   # default: the cfg's max_batches, else DEFAULT_ITERATIONS
    batch: int = 8                  # measured: per image, 8 learned faster than 16 (docs/measurements/training.md)
    optimizer: str = DEFAULT_OPTIMIZER
    lr: float | None = None         # default: Adam 1e-3; SGD the cfg's learning_rate and policy
    momentum: float | None = None   # SGD; default the cfg's
    decay: float | None = None      # default the cfg's
    augment: str = "default"
    mixup: float = 0.0
    freeze: int = 0
    frozen_engine: str = "onnxruntime"  # runs the frozen layers on the CPU (trainable_net.FROZEN_ENGINES); GPU: chainer
    device: str = "cpu"
    seed: int = 0
    val: str | None = None          # held-out dataset, evaluated at the end (and every eval_every)
    eval_every: int = 0
    checkpoint_every_s: float = CHECKPOINT_EVERY_S
    image_cache_mb: int = DEFAULT_IMAGE_CACHE_MB  # decoded training images kept in memory


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
        return model, (0 if is_seed_npz(path) else read_header(path).seen)
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
    if options.frozen_engine not in FROZEN_ENGINES:
        raise UserError(f"the frozen layers' engine must be one of {', '.join(FROZEN_ENGINES)}, "
                        f"found '{options.frozen_engine}'", EX_CONFIG)
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
    """Draws, augments and converts batches on a background thread, two batches ahead. `ahead`, if
    given (TrainableNet.ahead: the frozen layers on onnxruntime), runs on each batch's input on a
    second thread, so that drawing, the frozen layers and the training step overlap on the cores
    (docs/measurements/training.md). Each item is (the input of the step's forward pass, the labels)."""

    def __init__(self, dataset, spec: NetworkSpec, options: TrainOptions, rng, ahead=None):
        self.dataset, self.spec, self.rng, self.batch, self.ahead = dataset, spec, rng, options.batch, ahead
        detection, training = spec.detection, spec.training
        params = AugmentParams(spec.width, spec.height, jitter=detection.jitter, saturation=training.saturation,
                               exposure=training.exposure, hue=training.hue)
        self.augment = make_augmenter(options.augment, params, rng, options.mixup)
        self.order = []
        self.stop = threading.Event()
        self.threads = []
        drawn = self._start(self._drawn, "train-batches")
        self.queue = drawn if ahead is None else self._start(lambda: self._ahead_of(drawn), "train-ahead")

    def _start(self, produce, name: str) -> queue.Queue:
        """A thread putting each item of the generator `produce()` on a new queue; an error ends
        it and is queued as the last item."""
        out = queue.Queue(maxsize=2)

        def run() -> None:
            try:
                for item in produce():
                    if not self._put(out, item):
                        return
            except Exception as error:  # surfaced in the training thread, which owns error reporting
                self._put(out, error)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)
        return out

    def _put(self, out: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

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

    def _drawn(self):
        while True:
            samples = [self._sample() for _ in range(self.batch)]
            blob = np.concatenate([to_blob(s.image_bgr, self.spec.width, self.spec.height) for s in samples])
            yield blob, [s.labels for s in samples]

    def _ahead_of(self, drawn: queue.Queue):
        while not self.stop.is_set():
            try:
                item = drawn.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                raise item
            blob, labels = item
            yield self.ahead(blob), labels

    def next(self) -> tuple:
        item = self.queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)


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
    detections = detect_all(dataset, _NetEngine(net, model), dataset.class_names)
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


@dataclass(frozen=True)
class Setup:
    """What a run starts from, all checked before any training work is done."""
    model: Model         # the initial parameters
    seen: int            # images the initial weights have seen (their Darknet header's count)
    dataset: object      # dataset.Dataset
    val: object | None   # the held-out dataset.Dataset of --val
    iterations: int
    out: Path
    device: str          # "cpu" or "gpu:N"


def setup(options: TrainOptions) -> Setup:
    """The initial model, the datasets, the output path and the device; a UserError for any option
    or dataset that does not fit."""
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
    return Setup(model, seen, dataset, val, iterations, out, _device(options.device))


def make_optimizer(parameters, training: TrainingParams, options: TrainOptions, iterations: int) -> tuple:
    """(optimizer, learning_rate(iteration)): Darknet's SGD with the cfg's momentum and rate policy,
    or Adam with adam_learning_rate's schedule; the options override the cfg's values."""
    decay = training.decay if options.decay is None else options.decay
    if options.optimizer == "sgd":
        momentum = training.momentum if options.momentum is None else options.momentum
        return (DarknetSGD(parameters, momentum, decay),
                lambda iteration: training.learning_rate_at(iteration, options.lr))
    return Adam(parameters, decay), lambda iteration: adam_learning_rate(iteration, iterations, options.lr)


def update(net: TrainableNet, optimizer, batch: tuple, detection, rate: float) -> tuple:
    """One iteration on `batch` (the trained layers' input, labels): forward, the batch-mean
    detection cost, and, when that is finite, backward and one optimizer step at `rate`. Returns
    (the cost, the detection layer's BatchStatistics of the batch)."""
    inputs, labels = batch
    loss, targets = detection_loss(net.step_forward(net.xp.asarray(inputs)), labels, detection)
    value = float(loss.array)
    if math.isfinite(value):
        net.cleargrads()
        loss.backward()
        optimizer.update(rate)
    return value, targets.statistics


class Checkpoints:
    """Saves the network being trained to `out`, atomically: every `every_s` seconds and at the end."""

    def __init__(self, net: TrainableNet, source: str, out: Path, every_s: float):
        self.net, self.source, self.out, self.every_s = net, source, out, every_s
        self.t_saved = time.monotonic()

    def save(self, seen: int) -> None:
        save_darknet(self.net.to_model(f"trained from {self.source}"), self.out, seen)
        self.t_saved = time.monotonic()

    def save_if_due(self, seen: int) -> None:
        if time.monotonic() - self.t_saved > self.every_s:
            self.save(seen)


def run_iterations(net: TrainableNet, optimizer, learning_rate, batches: _Batches, run: Setup, stop: _StopSignals,
                   after_iteration) -> list:
    """The loop: `run.iterations` updates, or fewer when a stop signal arrives; after each,
    `after_iteration(iteration, loss, rate, statistics)` (1-based: reporting, checkpoints, evaluation).
    Returns the losses of the completed iterations."""
    losses = []
    with chainer.using_config("train", True):
        for iteration in range(run.iterations):
            if stop.received:
                break
            rate = learning_rate(iteration)
            loss, statistics = update(net, optimizer, batches.next(), run.model.spec.detection, rate)
            if not math.isfinite(loss):
                raise UserError(f"the loss became {loss} at iteration {iteration + 1}: training diverged. "
                                f"{run.out} keeps the last good checkpoint; try a lower --lr.")
            losses.append(loss)
            after_iteration(iteration + 1, loss, rate, statistics)
    return losses


def train(options: TrainOptions, report=None) -> TrainResult:
    """A whole run; `report`, if given, is called with each record of report.py (StepRecord after
    every iteration, EvaluationRecord, and a DoneRecord at the end)."""
    report = report or (lambda record: None)
    run = setup(options)
    spec, model = run.model.spec, run.model
    seen = run.seen
    # gpu:N: every CuPy call of the run (parameters, batches, optimizer state) on device N
    with device_context(run.device):
        net = TrainableNet(model, options.freeze, options.frozen_engine if run.device == "cpu" else "chainer")
        if run.device != "cpu":
            net.to_device(f"@cupy:{run.device.split(':')[1]}")  # moved once; per step only the batch goes
        optimizer, learning_rate = make_optimizer(net.trainable_parameters(), spec.training, options, run.iterations)
        log.info("training %s (%s) on %s: %d images, %d iterations of %d, %s, device %s, first %d layers frozen%s",
                 spec.name, model.source, run.dataset.source, len(run.dataset), run.iterations, options.batch,
                 options.optimizer, run.device, options.freeze,
                 f" (run by {net.frozen_engine})" if options.freeze else "")
        images = DecodedImages(run.dataset, options.image_cache_mb << 20)
        batches = _Batches(images, spec, options, np.random.default_rng(options.seed), net.ahead)
        checkpoints = Checkpoints(net, model.source, run.out, options.checkpoint_every_s)
        throughput = Throughput()
        evaluations, detections = [], []

        def evaluate(iteration: int) -> None:
            evaluation, found = _evaluate(net, model, run.val)
            evaluations.append((iteration, evaluation))
            detections[:] = found
            report(EvaluationRecord(iteration, evaluation, run.val.source))

        def after_iteration(iteration: int, loss: float, rate: float, statistics: BatchStatistics) -> None:
            nonlocal seen
            seen += options.batch
            report(StepRecord(iteration, run.iterations, loss, rate, *throughput.add(options.batch), statistics))
            checkpoints.save_if_due(seen)
            if run.val is not None and options.eval_every and iteration % options.eval_every == 0 \
                    and iteration < run.iterations:
                evaluate(iteration)

        try:
            with _StopSignals() as stop:
                losses = run_iterations(net, optimizer, learning_rate, batches, run, stop, after_iteration)
                checkpoints.save(seen)
            if run.val is not None and not stop.received:
                evaluate(len(losses))
        finally:
            batches.close()
    if stop.received:
        log.warning("stopped by %s after %d iterations; saved %s (seen %d)", stop.received, len(losses), run.out, seen)
    report(DoneRecord(str(run.out), seen, len(losses), stop.received,
                      evaluations[-1][1].map if evaluations else None))
    return TrainResult(run.out, seen, len(losses), stop.received, tuple(losses), tuple(evaluations), tuple(detections))
