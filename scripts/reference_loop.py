"""A plain Chainer training loop of the trainer's objective, the yardstick for how much the trainer
learns per image (issue 19 item 5): Darknet's v1 detection cost (detector/train/objective.py), the
cfg's own initialisation (Darknet's rules, as the trainer starts), Chainer's stock Adam at 0.001
with nothing else (no decay, no schedule), batches of 16 drawn from a new permutation each pass,
random horizontal flips as the only augmentation, every image resized once, up front, as
inference resizes. mAP@0.5 on --val at the end, by the trainer's own evaluation.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/reference_loop.py TRAIN VAL --cfg CFG --iterations 1500 --seed 0
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from detector.model import chainer_compat  # noqa: F401  (before chainer)
import chainer

from detector.model.cfg import load_spec
from detector.model.network import Model
from detector.model.preprocess import to_blob
from detector.train.dataset import load_dataset
from detector.train.evaluate import evaluate_engine
from detector.train.labels import LabelBoxes
from detector.train.objective import detection_loss
from detector.train.trainable_net import TrainableNet, darknet_random_model


class NetAsEngine:
    """The network in test mode, as evaluate_engine wants an engine."""

    def __init__(self, net: TrainableNet, model: Model):
        self.net, self.model = net, model

    def infer(self, blob: np.ndarray) -> np.ndarray:
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            return self.net(blob).array


def flipped(labels: LabelBoxes) -> LabelBoxes:
    boxes = labels.boxes_norm.copy()
    boxes[:, 0] = 1.0 - boxes[:, 0]
    return LabelBoxes(labels.class_ids, boxes, labels.weights)


def reference_train(train_dir: str, val_dir: str, cfg: str, iterations: int, batch: int = 16, lr: float = 1e-3,
                    seed: int = 0) -> dict:
    spec = load_spec(cfg)
    train_set, val_set = load_dataset(train_dir), load_dataset(val_dir)
    model = darknet_random_model(spec, seed)
    net = TrainableNet(model)
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(net)
    blobs = np.concatenate([to_blob(sample.image_bgr, spec.width, spec.height) for sample in train_set])
    labels = list(train_set.labels)
    rng = np.random.default_rng(seed)
    order: list = []
    losses = []
    started = time.perf_counter()
    with chainer.using_config("train", True):
        for _ in range(iterations):
            indices = []
            while len(indices) < batch:
                if not order:
                    order = list(rng.permutation(len(blobs)))
                indices.append(order.pop())
            flip = rng.random(batch) < 0.5
            x = blobs[indices]
            x[flip] = x[flip][..., ::-1]
            truth = [flipped(labels[i]) if f else labels[i] for i, f in zip(indices, flip)]
            loss, _ = detection_loss(net(x), truth, spec.detection)
            net.cleargrads()
            loss.backward()
            optimizer.update()
            losses.append(float(loss.array))
    evaluation = evaluate_engine(val_set, NetAsEngine(net, model))
    return {"map": round(evaluation.map, 6), "iterations": iterations, "batch": batch, "seed": seed,
            "final_loss": round(float(np.mean(losses[-50:])), 4), "train_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train")
    parser.add_argument("val")
    parser.add_argument("--cfg", required=True)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(reference_train(args.train, args.val, args.cfg, args.iterations, args.batch, args.lr, args.seed)))


if __name__ == "__main__":
    main()
