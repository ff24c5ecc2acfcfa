"""Measurements behind the frozen-source criterion (detector/freeze.py; docs/measurements/frozen.md).

For each kind of live picture, how far consecutive frames are from counting as "the same picture"
(the largest value difference, and how many values differ by more than STEADY_LEVELS, both as the
minimum over all consecutive pairs), and what the comparison costs per frame at three frame sizes,
next to the cheaper-looking alternatives (a strided sample, a downscaled copy) and whether those
still see a small moving region.

Run as `.venv/bin/python scripts/measure_frozen.py [--clip PATH]`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from detector.freeze import STEADY_LEVELS, same_picture

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "vtest_opencv.avi"


def pair_margins(frames) -> str:
    """min over consecutive pairs of (largest difference, values differing by more than STEADY_LEVELS)."""
    largest, beyond = [], []
    for a, b in zip(frames, frames[1:]):
        difference = cv2.absdiff(a, b)
        largest.append(int(difference.max()))
        beyond.append(int(np.count_nonzero(difference > STEADY_LEVELS)))
    steady = sum(same_picture(a, b) for a, b in zip(frames, frames[1:]))
    return (f"{len(frames) - 1} pairs: largest difference min {min(largest)}, values > {STEADY_LEVELS} level "
            f"min {min(beyond)} of {frames[0].size}; pairs counted as the same picture: {steady}")


def scene(width=640, height=480) -> np.ndarray:
    image = np.dstack([np.tile(np.linspace(40, 200, width), (height, 1))] * 3).astype(np.float32)
    cv2.rectangle(image, (100, 100), (300, 400), (60, 60, 200), -1)
    cv2.rectangle(image, (400, 50), (600, 200), (250, 250, 250), -1)  # near white: noise clips there
    return image


def noisy_frames(sigma, quality, rng, count=30):
    frames = []
    for _ in range(count):
        image = np.clip(np.rint(scene() + rng.normal(0, sigma, (480, 640, 3))), 0, 255).astype(np.uint8)
        if quality:
            image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
        frames.append(image)
    return frames


def median_ms(function, repeats=300) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def strided(a, b):
    return cv2.norm(a[::4, ::4], b[::4, ::4], cv2.NORM_INF) <= STEADY_LEVELS


def downscaled(a, b):
    size = (a.shape[1] // 8, a.shape[0] // 8)
    return cv2.norm(cv2.resize(a, size, interpolation=cv2.INTER_AREA),
                    cv2.resize(b, size, interpolation=cv2.INTER_AREA), cv2.NORM_INF) <= STEADY_LEVELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a real video (default: the shared vtest clip)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    print("== consecutive frames")
    if args.clip.is_file():
        capture, frames = cv2.VideoCapture(str(args.clip)), []
        while (frame := capture.read()[1]) is not None:
            frames.append(frame)
        print(f"{args.clip.name} ({frames[0].shape[1]}x{frames[0].shape[0]}): {pair_margins(frames)}")
    else:
        print(f"{args.clip} not found: the real clip is skipped")
    for sigma in (0.3, 0.5, 1.0, 2.0):
        for quality in (None, 95, 80, 50):
            label = f"still scene, noise sigma {sigma} level, " + (f"JPEG q{quality}" if quality else "raw")
            print(f"{label}: {pair_margins(noisy_frames(sigma, quality, rng))}")

    print("== a small region moving one pixel a frame in a noiseless scene: pairs taken for the same picture")
    still = scene().astype(np.uint8)
    for side in (1, 2, 4):
        frames = []
        for step in range(21):
            image = still.copy()
            image[240:240 + side, 320 + step:320 + step + side] = 0
            frames.append(image)
        pairs = list(zip(frames, frames[1:]))
        counts = [sum(test(a, b) for a, b in pairs) for test in (same_picture, strided, downscaled)]
        print(f"{side}x{side} px: every pixel {counts[0]}/20, every 4th pixel {counts[1]}/20, "
              f"1/8 area downscale {counts[2]}/20")

    print("== cost per frame (median ms)")
    for width, height in ((640, 480), (1280, 720), (1920, 1080)):
        a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        b = a.copy()
        b[height // 2, width // 2, 1] ^= 7
        print(f"{width}x{height}: every pixel {median_ms(lambda: same_picture(a, b)):.3f}, "
              f"every 4th pixel {median_ms(lambda: strided(a, b)):.3f}, "
              f"1/8 area downscale {median_ms(lambda: downscaled(a, b)):.3f}")


if __name__ == "__main__":
    main()
