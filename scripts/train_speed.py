"""Training speed of yolov1-tiny at 448x448 by difference of two run lengths (start-up, dataset
loading and file writing cancel out): head-only fine-tuning (`--freeze 14`) with the frozen layers
on onnxruntime and on Chainer, and full training, taking turns in each repeat so that the ratio
compares like with like on a loaded machine. Results: docs/measurements/training.md.

    OPENBLAS_NUM_THREADS=... .venv/bin/python scripts/train_speed.py [--repeats 3] [--short 5 --long 25]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from detector import bench
from detector.model.decode import VOC_CLASSES
from detector.model.network import random_model
from detector.model.cfg import load_spec
from detector.model.weight_formats import save_darknet
from detector.train import shapes
from detector.train.trainer import TrainOptions, train

# name -> (freeze, engine of the frozen layers)
ROWS = {"freeze 14, onnxruntime": (14, "onnxruntime"), "freeze 14, chainer": (14, "chainer"), "all layers": (0, "chainer")}
SHAPE_TO_VOC = {0: 14, 1: 4, 2: 16}  # person, box -> bottle, ball -> pottedplant: 20-class labels


def write_dataset(root: Path, count: int) -> Path:
    """Generated 640x480 camera-sized frames with VOC class ids."""
    shapes.write_dataset(root, count, seed=1, width=640, height=480)
    (root / "classes.txt").write_text("\n".join(VOC_CLASSES) + "\n")
    for label in (root / "labels").glob("*.txt"):
        lines = [line.split() for line in label.read_text().splitlines()]
        label.write_text("".join(f"{SHAPE_TO_VOC[int(c)]} {' '.join(rest)}\n" for c, *rest in lines))
    return root


def timed_run(data: Path, weights: Path, out: Path, iterations: int, batch: int, freeze: int, engine: str) -> tuple:
    """(wall s, process CPU s) of one whole train() call."""
    wall, cpu = time.perf_counter(), time.process_time()
    train(TrainOptions(str(data), cfg="yolov1-tiny", weights=str(weights), out=str(out), iterations=iterations,
                       batch=batch, freeze=freeze, frozen_engine=engine, seed=0, checkpoint_every_s=1e9))
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_description() -> str:
    """bench's CPU line, and whether AVX-512 is hidden from this process (scripts/hide_avx512.c):
    /proc/cpuinfo still lists it then."""
    cpu = bench.cpu_description()
    hidden = " (AVX-512 hidden from this process: scripts/hide_avx512.c)" if "hide_avx512" in os.environ.get("LD_PRELOAD", "") else ""
    return f"{cpu['model']}, {os.cpu_count()} CPUs, {' '.join(cpu['flags'])}{hidden}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--short", type=int, default=5, help="iterations of the short run")
    parser.add_argument("--long", type=int, default=25, help="iterations of the long run")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        data = write_dataset(tmp / "data", args.images)
        weights = tmp / "init.weights"  # speed does not depend on the values
        save_darknet(random_model(load_spec("yolov1-tiny"), seed=0), weights, 0)
        for row in args.rows:  # once each, uncounted: the first run in a process pays one-time costs
            timed_run(data, weights, tmp / "out.weights", 1, args.batch, *ROWS[row])
        per_iteration = {row: [] for row in args.rows}  # (wall s, CPU s) per repeat
        for repeat in range(args.repeats):
            for row in args.rows:
                freeze, engine = ROWS[row]
                short = timed_run(data, weights, tmp / "out.weights", args.short, args.batch, freeze, engine)
                long = timed_run(data, weights, tmp / "out.weights", args.long, args.batch, freeze, engine)
                steps = args.long - args.short
                per_iteration[row].append(((long[0] - short[0]) / steps, (long[1] - short[1]) / steps))
                print(json.dumps({"repeat": repeat, "row": row, "wall_s_per_iteration": round(per_iteration[row][-1][0], 4),
                                  "cpu_s_per_iteration": round(per_iteration[row][-1][1], 4)}), flush=True)
    print(f"\nCPU: {cpu_description()}; batch {args.batch}; {args.short} and {args.long} iterations; "
          f"median of {args.repeats}\n")
    print("| what trains | wall s / iteration | images/s | CPU s / iteration | runs (wall s / iteration) |")
    print("|---|---|---|---|---|")
    for row, values in per_iteration.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        runs = ", ".join(f"{v[0]:.3f}" for v in values)
        print(f"| {row} | {wall:.3f} | {args.batch / wall:.1f} | {cpu:.3f} | {runs} |")
    if {"freeze 14, onnxruntime", "freeze 14, chainer"} <= set(per_iteration):
        ratios = [c[0] / o[0] for o, c in zip(per_iteration["freeze 14, onnxruntime"], per_iteration["freeze 14, chainer"])]
        print(f"\nfrozen layers on onnxruntime against Chainer, per repeat: {', '.join(f'{r:.2f}x' for r in ratios)} "
              f"(median {statistics.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
