"""Two more generated datasets for the training experiments (issue 19), in Darknet's layout, each
image a pure function of (seed, index). Experiment data, not part of the product: the product's own
generator (detector/train/shapes.py) feeds the suite.

- `scenes`: a differently generated set. Three other classes (`bottle`: an upright shaded capsule
  with a cap; `ring`: an annulus; `sign`: a rotated triangle with a thick border), on cluttered
  "room" backgrounds of overlapping blurred colour blocks, 0 to 5 objects, small ones included,
  which may overlap by up to a third (the nearer one drawn last).
- `robot view` of the shapes set: what a camera at knee height sees of the same scenes. Each
  shapes image is rendered on a canvas 1.25 to 1.5 times taller and only its bottom part kept, so
  objects are larger in the frame and tall ones (people) are cut off at the top, their boxes
  clipped to what is visible; then the picture is dimmed, blurred and given sensor noise.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detector.train import shapes

SCENE_CLASSES = ("bottle", "ring", "sign")


def _write(root: Path, classes: tuple, count: int, make) -> Path:
    """make(index) -> (image_bgr, class_ids, boxes_norm); written as root/images, root/labels."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for index in range(count):
        image, class_ids, boxes = make(index)
        cv2.imwrite(str(root / "images" / f"{index:05d}.png"), image)
        lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, (x, y, w, h) in zip(class_ids, boxes)]
        (root / "labels" / f"{index:05d}.txt").write_text("".join(lines))
    return root


# --- scenes ----------------------------------------------------------------------------------------

def _room(rng, width: int, height: int) -> np.ndarray:
    image = np.full((height, width, 3), rng.integers(40, 220, 3), np.uint8)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = int(rng.integers(-width // 4, width)), int(rng.integers(-height // 4, height))
        w, h = int(rng.integers(width // 8, width // 2)), int(rng.integers(height // 8, height // 2))
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 3.0))
    return np.clip(image + rng.normal(0, rng.uniform(2, 8), image.shape), 0, 255).astype(np.uint8)


def _bottle(image, rng, cx, cy, w, h) -> None:
    colour = rng.integers(30, 256, 3)
    x0, x1, top, bottom = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    neck = top + h * 0.25
    for step in range(8):  # shading across the body: darker at the edges
        shade = tuple(int(v) for v in colour * (0.6 + 0.4 * np.sin(np.pi * (step + 0.5) / 8)))
        sx0, sx1 = x0 + w * step / 8, x0 + w * (step + 1) / 8
        cv2.rectangle(image, (int(sx0), int(neck)), (int(np.ceil(sx1)), int(bottom)), shade, -1)
    cv2.rectangle(image, (int(cx - w * 0.18), int(top + h * 0.06)), (int(cx + w * 0.18), int(neck)),
                  tuple(int(v) for v in colour * 0.8), -1)
    cv2.rectangle(image, (int(cx - w * 0.2), int(top)), (int(cx + w * 0.2), int(top + h * 0.07)),
                  tuple(int(v) for v in rng.integers(0, 256, 3)), -1)


def _ring(image, rng, cx, cy, w, h) -> None:
    thickness = max(2, int(min(w, h) * rng.uniform(0.12, 0.25)))
    axes = (max(1, int(w / 2 - thickness / 2)), max(1, int(h / 2 - thickness / 2)))
    cv2.ellipse(image, (int(cx), int(cy)), axes, 0, 0, 360, tuple(int(v) for v in rng.integers(0, 256, 3)), thickness)


def _sign(image, rng, cx, cy, w, h) -> None:
    angle = rng.uniform(-0.35, 0.35)
    corners = np.array([(0, -0.5), (-0.5, 0.5), (0.5, 0.5)])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = corners @ rotation.T
    points = (points - points.min(0)) / (points.max(0) - points.min(0)) - 0.5  # fill the box exactly
    polygon = np.round(points * (w, h) + (cx, cy)).astype(np.int32)
    cv2.fillPoly(image, [polygon], tuple(int(v) for v in rng.integers(0, 256, 3)))
    cv2.polylines(image, [polygon], True, tuple(int(v) for v in rng.integers(0, 256, 3)), max(1, int(min(w, h) * 0.1)))


def scene(seed: int, index: int, width: int, height: int) -> tuple:
    rng = np.random.default_rng([seed, index, 7])
    image = _room(rng, width, height)
    class_ids, boxes = [], []
    for _ in range(int(rng.integers(0, 6))):
        class_id = int(rng.integers(0, 3))
        if class_id == 0:
            h = rng.uniform(0.2, 0.7) * height
            w = h * rng.uniform(0.3, 0.45)
        else:
            w = h = rng.uniform(0.1, 0.4) * min(width, height)
            w *= rng.uniform(0.8, 1.25)
        # at most a third of either box hidden; one object per grid cell's centre
        centre = shapes.place(rng, w, h, width, height, lambda cx, cy: all(
            _overlap((cx, cy, w, h), (bx * width, by * height, bw * width, bh * height)) < 1 / 3
            and np.hypot(cx - bx * width, cy - by * height) > width / 7 for bx, by, bw, bh in boxes))
        if centre is not None:
            (_bottle, _ring, _sign)[class_id](image, rng, *centre, w, h)
            class_ids.append(class_id)
            boxes.append((centre[0] / width, centre[1] / height, w / width, h / height))
    return image, np.array(class_ids, np.int32), np.array(boxes, np.float32).reshape(-1, 4)


def _overlap(a, b) -> float:
    """The intersection over the smaller box's area, boxes as (cx, cy, w, h)."""
    ix = max(0.0, min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2))
    iy = max(0.0, min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2))
    return ix * iy / min(a[2] * a[3], b[2] * b[3])


def write_scenes(root, count: int, seed: int, width: int, height: int) -> Path:
    return _write(root, SCENE_CLASSES, count, lambda index: scene(seed, index, width, height))


# --- the shapes set from knee height ---------------------------------------------------------------

def robot_view(seed: int, index: int, width: int, height: int) -> tuple:
    """The shapes image (seed, index) as a knee-high robot camera sees it (module docstring)."""
    rng = np.random.default_rng([seed, index, 11])
    tall = int(round(height * rng.uniform(1.25, 1.5)))
    image, class_ids, boxes = shapes.generate(seed, index, width, tall)
    top = tall - height  # the camera sees the bottom `height` rows, at the same scale
    crop = image[top:]
    kept_ids, kept_boxes = [], []
    for class_id, (cx, cy, w, h) in zip(class_ids, boxes):
        y0, y1 = max(0.0, (cy - h / 2) * tall - top), (cy + h / 2) * tall - top
        if y1 - y0 < 0.25 * h * tall:  # less than a quarter visible: not labelled, as a labeller would skip it
            continue
        kept_ids.append(class_id)
        kept_boxes.append((cx, (y0 + y1) / 2 / height, w, (y1 - y0) / height))
    dim = rng.uniform(0.3, 0.6)
    crop = cv2.GaussianBlur(crop.astype(np.float32) * dim, (0, 0), rng.uniform(0.8, 1.6))
    crop += rng.normal(0, rng.uniform(3, 8), crop.shape)
    return (np.clip(crop, 0, 255).astype(np.uint8), np.array(kept_ids, np.int32),
            np.array(kept_boxes, np.float32).reshape(-1, 4))


def write_robot_view(root, count: int, seed: int, width: int, height: int) -> Path:
    return _write(root, shapes.CLASSES, count, lambda index: robot_view(seed, index, width, height))
