"""The learning loop on a domain shift (issue 19): a model trained on the shapes set at eye level,
evaluated on the same kinds of scenes as a knee-high robot camera sees them (dimmer, blurred,
objects larger and people cut off at the top: scripts/generated_sets.py), before and after
fine-tuning with `train` on a few hundred robot-view images, against training from scratch on those
images with the same budget. Everything through `train()` with its defaults (batch 8, default
augmentation, Adam); 112x112 v1 cfg without batch norm, as scripts/train_ablation.py. Results:
docs/measurements/training.md.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/domain_shift.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from detector.model.cfg import load_spec
from detector.model.engines import create_engine
from detector.model.weights_store import load_model
from detector.train import shapes
from detector.train.dataset import load_dataset
from detector.train.evaluate import evaluate_engine
from detector.train.trainer import TrainOptions, train
from generated_sets import write_robot_view
from train_ablation import SIZE, write_cfg


def mean_ap(weights: Path, cfg: str, val: Path) -> float:
    model = load_model(weights, cfg)
    return evaluate_engine(load_dataset(val), create_engine(model, "onnxruntime")).map


def run(folder: Path, cfg: str, seed: int, args) -> dict:
    eye = folder / f"eye-{seed}.weights"
    started = time.perf_counter()
    train(TrainOptions(str(folder / "eye"), cfg=cfg, out=str(eye), iterations=args.eye_images // 8, seed=seed,
                       checkpoint_every_s=1e9))
    result = {"seed": seed, "eye level, on eye-level images": mean_ap(eye, cfg, folder / "eye-val"),
              "eye level, on robot-view images (before)": mean_ap(eye, cfg, folder / "robot-val")}
    for name, weights in (("fine-tuned on robot view (after)", str(eye)), ("from scratch on robot view", None)):
        out = folder / f"robot-{seed}.weights"
        train(TrainOptions(str(folder / "robot"), cfg=cfg, weights=weights, out=str(out),
                           iterations=args.robot_images_seen // 8, seed=seed, checkpoint_every_s=1e9))
        result[name] = mean_ap(out, cfg, folder / "robot-val")
    result["s"] = round(time.perf_counter() - started)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eye-images", type=int, default=24000, help="images seen training at eye level")
    parser.add_argument("--robot-train", type=int, default=200, help="robot-view training images")
    parser.add_argument("--robot-images-seen", type=int, default=6400,
                        help="images seen fine-tuning, and from scratch (400 x 16)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shapes.write_dataset(folder / "eye", 1200, seed=1, width=SIZE, height=SIZE)
        shapes.write_dataset(folder / "eye-val", 150, seed=2, width=SIZE, height=SIZE)
        write_robot_view(folder / "robot", args.robot_train, seed=3, width=SIZE, height=SIZE)
        write_robot_view(folder / "robot-val", 150, seed=4, width=SIZE, height=SIZE)
        cfg = write_cfg(folder / "shapes112.cfg")
        load_spec(cfg)  # a bad cfg fails before the first run
        results = []
        for seed in args.seeds:
            results.append(run(folder, cfg, seed, args))
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results[-1].items()}), flush=True)
    print(f"\n{args.eye_images} images at eye level (1,200 images); {args.robot_images_seen} images seen on "
          f"{args.robot_train} robot-view images; mAP@0.5 on 150 held-out images; seeds {args.seeds}\n")
    print("| model | mAP@0.5, median | per seed |")
    print("|---|---|---|")
    for key in [k for k in results[0] if k not in ("seed", "s")]:
        values = [r[key] for r in results]
        print(f"| {key} | {statistics.median(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
