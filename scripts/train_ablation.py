"""Why does the trainer learn less per image than a plain loop? (issue 19 item 5)

On generated shapes, or the differently generated scenes (`--set scenes`), 3 classes each, at
112x112 with a v1 cfg without batch norm, from random initialisation, each row trains for the same number of images and reports mAP@0.5 on held-out
images, the median of several seeds: the plain reference loop (scripts/reference_loop.py) and
`train()` with one candidate changed at a time (augmentation strength, weight decay, schedule,
batch). Results: docs/measurements/training.md.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/train_ablation.py --images 24000 --seeds 0 1 2 [--rows ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from detector.train import augment, shapes, trainer
from detector.train.trainer import TrainOptions, train
from generated_sets import write_scenes
from reference_loop import reference_train

SIZE = 112
FILTERS = (16, 32, 64, 64, 16)  # 112 -> 7 after four 2x2 max-pools


def write_cfg(path: Path, jitter: float = 0.2, colour: bool = True) -> str:
    """The shapes cfg at 112x112 without batch norm; `jitter` and the HSV ranges as given."""
    text = shapes.cfg_text(FILTERS, SIZE).replace("batch_normalize=1", "batch_normalize=0")
    text = text.replace("jitter=0.2", f"jitter={jitter}")
    if not colour:
        text = text.replace("saturation=1.5", "saturation=1").replace("exposure=1.5", "exposure=1").replace("hue=0.1", "hue=0")
    path.write_text(text)
    return str(path)


@contextmanager
def patched(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def no_corruptions(image_bgr, rng, probability=0.0):
    return image_bgr


# row name -> (what it changes against the trainer's defaults, a function (data, cfgs, images, seed) -> mAP)
def _trainer_row(batch=16, augment_policy="default", jitter=0.2, colour=True, corruptions=True, decay=None,
                 constant_rate=False):
    def run(folder: Path, images: int, seed: int) -> float:
        cfg = write_cfg(folder / f"j{jitter}-c{int(colour)}.cfg", jitter, colour)
        options = TrainOptions(str(folder / "train"), val=str(folder / "val"), cfg=cfg, out=str(folder / "out.weights"),
                               iterations=images // batch, batch=batch, augment=augment_policy, decay=decay, seed=seed,
                               checkpoint_every_s=1e9)
        with patched(augment, "random_corruptions", augment.random_corruptions if corruptions else no_corruptions), \
                patched(trainer, "ADAM_FINAL_FRACTION", 0.0 if constant_rate else trainer.ADAM_FINAL_FRACTION):
            return train(options).evaluations[-1][1].map
    return run


def _reference_row(folder: Path, images: int, seed: int) -> float:
    return reference_train(str(folder / "train"), str(folder / "val"), write_cfg(folder / "reference.cfg"),
                           images // 16, 16, seed=seed)["map"]


ROWS = {
    "reference loop (Adam 0.001, flips only, batch 16, no decay, constant rate)": _reference_row,
    "train, defaults but batch 16": _trainer_row(),
    "train, defaults (batch 8)": _trainer_row(batch=8),
    "train --augment none, batch 16": _trainer_row(augment_policy="none"),
    "train, flips only (jitter 0, no HSV, no corruptions), batch 16": _trainer_row(jitter=0.0, colour=False, corruptions=False),
    "train, default without corruptions, batch 16": _trainer_row(corruptions=False),
    "train, default with jitter 0.1, no corruptions, batch 16": _trainer_row(jitter=0.1, corruptions=False),
    "train, flips only, --decay 0, constant rate, batch 16": _trainer_row(jitter=0.0, colour=False, corruptions=False,
                                                                          decay=0.0, constant_rate=True),
    "train, flips only (batch 8)": _trainer_row(batch=8, jitter=0.0, colour=False, corruptions=False),
    "train, default without corruptions (batch 8)": _trainer_row(batch=8, corruptions=False),
    "train, default without HSV (batch 8)": _trainer_row(batch=8, colour=False),
    "train, default with jitter 0.1 (batch 8)": _trainer_row(batch=8, jitter=0.1),
}


SETS = {"shapes": shapes.write_dataset, "scenes": write_scenes}  # scenes: scripts/generated_sets.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24000, help="images seen per run (the issue: 1,500 x 16)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-images", type=int, default=1200)
    parser.add_argument("--rows", type=int, nargs="*", help="row numbers (0-based) to run; default all")
    parser.add_argument("--set", choices=tuple(SETS), default="shapes", help="which generated set (3 classes each)")
    args = parser.parse_args()
    names = list(ROWS) if args.rows is None else [list(ROWS)[i] for i in args.rows]
    results = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        SETS[args.set](folder / "train", args.train_images, seed=1, width=SIZE, height=SIZE)
        SETS[args.set](folder / "val", 150, seed=2, width=SIZE, height=SIZE)
        for seed in args.seeds:  # seeds outermost: an interrupted run still has every row for the first seeds
            for name in names:
                started = time.perf_counter()
                value = ROWS[name](folder, args.images, seed)
                results[name].append(value)
                print(json.dumps({"row": name, "seed": seed, "map": round(value, 4),
                                  "s": round(time.perf_counter() - started)}), flush=True)
    print(f"\n{args.set}: {args.images} images per run ({args.train_images} training images, 150 held out), "
          f"seeds {args.seeds}\n")
    print("| run | mAP@0.5, median | per seed |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
