#!/usr/bin/env python3
"""The person tracker's cost per frame (docs/measurements/tracker.md): N people walking at random
across a 640x480 frame at 30 fps, 10% of detections missed, timed over many frames.

  .venv/bin/python scripts/bench_tracker.py [--people 10] [--frames 3000] [--repeats 5]

Three cases: without frames (as `robot-detector track` runs), with frames while the target is seen
(the daemon learns its colours every frame), and with frames while the target is lost (every other
person's colours are compared, the dearest case).
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from detector.daemon.tracker import PersonTracker  # noqa: E402
from detector.model.decode import Detection  # noqa: E402


def scene(people: int, frames: int, seed: int = 1) -> tuple:
    """(per frame the detections, the index of the largest person): people drifting with random
    velocities, boxes 0.08-0.25 wide, each detection tagged with its person's index."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 0.9, people)
    size = rng.uniform(0.3, 0.9, people)
    velocity = rng.normal(0, 0.1, people)
    out = []
    for _ in range(frames):
        x = np.clip(x + velocity / 30, 0.05, 0.95)
        velocity = np.where((x <= 0.05) | (x >= 0.95), -velocity, velocity)
        seen = rng.random(people) >= 0.1
        out.append([(i, Detection("person", 14, 0.7, float(x[i] + rng.normal(0, 0.003)), 0.5, 0.28 * size[i],
                                  float(size[i] + rng.normal(0, 0.005)))) for i in range(people) if seen[i]])
    return out, int(np.argmax(size))


def time_per_frame_ms(frames: list, largest: int, frame_bgr, lose_target: bool) -> float:
    """Mean update time after a second of locking and learning the largest person alone; `lose_target`: it
    is not detected after that, so that every frame compares the others' colours with its own."""
    tracker = PersonTracker(appearance=frame_bgr is not None, grace_s=0.5, relock_s=1e9)
    for index, tagged in enumerate(frames[:30]):  # the largest alone first: locked, its colours learned
        tracker.update(index / 30, [d for i, d in tagged if i == largest], frame_bgr)
    start = time.perf_counter()
    for index, tagged in enumerate(frames[30:], 30):
        tracker.update(index / 30, [d for i, d in tagged if not (lose_target and i == largest)], frame_bgr)
    return (time.perf_counter() - start) / (len(frames) - 30) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    frames, largest = scene(args.people, args.frames)
    # hue changing across the frame: each person's colours depend on where it stands
    hsv = np.full((480, 640, 3), 200, np.uint8)
    hsv[..., 0] = np.linspace(0, 179, 640, dtype=np.uint8)[None]
    picture = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    print(f"{args.people} people, {args.frames} frames at 30 fps; ms per frame: median and slowest of {args.repeats} runs")
    for name, frame_bgr, lose in (("no frames (track)", None, False), ("frames, target seen (daemon)", picture, False),
                                  ("frames, target lost (daemon)", picture, True)):
        runs = [time_per_frame_ms(frames, largest, frame_bgr, lose) for _ in range(args.repeats)]
        print(f"{name:>30}: {statistics.median(runs):.3f} {max(runs):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
