"""A generated detection dataset of simple shapes in Darknet's layout, for tests and demos.

Classes: `person` (a figure with head, body, arms and legs), `box` (a rectangle) and `ball` (a
disc), on varied backgrounds (gradients, stripes, noise, clutter that is none of the classes),
at varied sizes and lighting. Every image is a pure function of (seed, index).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLASSES = ("person", "box", "ball")


def _colour(rng, low=0, high=256) -> tuple:
    return tuple(int(v) for v in rng.integers(low, high, 3))


def _background(rng, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * x / width + np.sin(angle) * y / height + 1) / 2
    image = a * (1 - ramp[..., None]) + b * ramp[..., None]
    if rng.random() < 0.4:  # stripes: floor boards, blinds
        period = rng.uniform(6, 30)
        image += 25 * np.sign(np.sin((x if rng.random() < 0.5 else y) * 2 * np.pi / period))[..., None]
    image += rng.normal(0, rng.uniform(2, 12), image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(0, 4)):  # clutter: thin lines and small blobs, not objects
        p1 = tuple(int(v) for v in rng.integers(0, (width, height)))
        p2 = tuple(int(v) for v in rng.integers(0, (width, height)))
        cv2.line(image, p1, p2, _colour(rng), int(rng.integers(1, 3)))
    return image


def _person(image, rng, cx, cy, w, h) -> None:
    """A figure filling the box (cx, cy, w, h) in pixels: legs, body, arms, head."""
    skin, shirt, trousers = _colour(rng, 60, 256), _colour(rng), _colour(rng)
    top = cy - h / 2
    head_r = max(2, int(h * 0.1))
    body_top, body_bottom = top + 2 * head_r, top + h * 0.58
    body_w = w * 0.5
    leg_w = max(2, int(w * 0.18))
    for side in (-1, 1):  # legs, then arms
        lx = int(cx + side * body_w * 0.28)
        cv2.line(image, (lx, int(body_bottom)), (int(lx + side * w * 0.08), int(top + h - 1)), trousers, leg_w)
        shoulder = (int(cx + side * body_w * 0.45), int(body_top + head_r * 0.5))
        hand = (int(cx + side * w * 0.45), int(body_top + (body_bottom - body_top) * rng.uniform(0.3, 1.0)))
        cv2.line(image, shoulder, hand, shirt, max(1, leg_w - 1))
    cv2.rectangle(image, (int(cx - body_w / 2), int(body_top)), (int(cx + body_w / 2), int(body_bottom)), shirt, -1)
    cv2.circle(image, (int(cx), int(top + head_r)), head_r, skin, -1)


def _box(image, rng, cx, cy, w, h) -> None:
    colour = _colour(rng)
    cv2.rectangle(image, (int(cx - w / 2), int(cy - h / 2)), (int(cx + w / 2), int(cy + h / 2)), colour, -1)
    edge = tuple(max(0, c - 60) for c in colour)
    cv2.rectangle(image, (int(cx - w / 2), int(cy - h / 2)), (int(cx + w / 2), int(cy + h / 2)), edge, 1)


def _ball(image, rng, cx, cy, w, h) -> None:
    cv2.ellipse(image, (int(cx), int(cy)), (int(w / 2), int(h / 2)), 0, 0, 360, _colour(rng), -1)


def _size(rng, class_id: int, width: int, height: int) -> tuple:
    """(w, h) in pixels for one object of the class."""
    if class_id == 0:
        h = rng.uniform(0.4, 0.9) * height
        return h * rng.uniform(0.35, 0.55), h
    if class_id == 1:
        return rng.uniform(0.2, 0.5) * width, rng.uniform(0.2, 0.5) * height
    d = rng.uniform(0.2, 0.45) * min(width, height)
    return d, d


def place(rng, w: float, h: float, width: int, height: int, fits, attempts: int = 10) -> tuple | None:
    """A centre (cx, cy) in pixels for a w x h box inside the image where `fits(cx, cy)` holds, drawn
    up to `attempts` times; None when none fits."""
    for _attempt in range(attempts):
        cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
        if fits(cx, cy):
            return cx, cy
    return None


def generate(seed: int, index: int, width: int = 128, height: int = 128, max_objects: int = 3) -> tuple:
    """(image_bgr, class_ids, boxes_norm) of image `index` of the dataset with this seed."""
    rng = np.random.default_rng([seed, index])
    image = _background(rng, width, height)
    class_ids, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        class_id = int(rng.choice(3, p=(0.5, 0.25, 0.25)))
        w, h = _size(rng, class_id, width, height)
        # keep objects apart so each is visible and owns its grid cell
        centre = place(rng, w, h, width, height, lambda cx, cy: all(
            abs(cx - bx * width) > (w + bw * width) / 2 * 0.8 or abs(cy - by * height) > (h + bh * height) / 2 * 0.8
            for bx, by, bw, bh in boxes))
        if centre is None:
            continue
        cx, cy = centre
        (_person, _box, _ball)[class_id](image, rng, cx, cy, w, h)
        class_ids.append(class_id)
        boxes.append((cx / width, cy / height, w / width, h / height))
    # Lighting: a global gain and a soft spotlight.
    gain = rng.uniform(0.45, 1.3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    spot = 1 + rng.uniform(0, 0.4) * np.exp(-(((x - rng.uniform(0, width)) ** 2 + (y - rng.uniform(0, height)) ** 2)
                                             / (2 * (0.4 * width) ** 2)))
    image = np.clip(image.astype(np.float32) * gain * spot[..., None], 0, 255).astype(np.uint8)
    return image, np.array(class_ids, np.int32), np.array(boxes, np.float32).reshape(-1, 4)


def write_dataset(root, count: int, seed: int = 0, width: int = 128, height: int = 128) -> Path:
    """Write `count` images as root/images/NNNNN.png + root/labels/NNNNN.txt + root/classes.txt."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for index in range(count):
        image, class_ids, boxes = generate(seed, index, width, height)
        cv2.imwrite(str(root / "images" / f"{index:05d}.png"), image)
        lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, (x, y, w, h) in zip(class_ids, boxes)]
        (root / "labels" / f"{index:05d}.txt").write_text("".join(line + "\n" for line in lines))
    return root


# A small v1-style network for this data: 3x3 convolutions with batch norm, a 2x2/2 max-pool
# after each but the last (56 -> 7 with four convolutions), and the connected layer that feeds a
# side x side, 2-box detection layer over the three classes. Sized so that training fits two CPU
# cores (docs/measurements/training.md).
FILTERS = (16, 32, 64, 16)  # the narrow last layer keeps the connected layer small: it learned faster (docs/measurements/training.md)
SIZE = 56


def cfg_text(filters=FILTERS, size: int = SIZE) -> str:
    convs = "".join(f"""
[convolutional]
batch_normalize=1
filters={f}
size=3
stride=1
pad=1
activation=leaky
""" + ("""
[maxpool]
size=2
stride=2
""" if index < len(filters) - 1 else "") for index, f in enumerate(filters))
    side = size >> (len(filters) - 1)
    return f"""[net]
batch=8
height={size}
width={size}
channels=3
learning_rate=0.001
momentum=0.9
decay=0.0005
saturation=1.5
exposure=1.5
hue=0.1
max_batches=5000
{convs}
[connected]
output={side * side * (2 * 5 + len(CLASSES))}
activation=linear

[detection]
classes={len(CLASSES)}
coords=4
rescore=1
side={side}
num=2
softmax=0
sqrt=1
jitter=0.2
object_scale=1
noobject_scale=0.5
class_scale=1
coord_scale=5
"""


def write_cfg(path, filters=FILTERS, size: int = SIZE) -> Path:
    path = Path(path)
    path.write_text(cfg_text(filters, size))
    return path
