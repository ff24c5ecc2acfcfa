"""Training-time image augmentation, Darknet's v1 loader plus mixup and camera corruptions.

Entry point for the trainer:

    augment = make_augmenter(policy, params, rng, mixup_alpha)
    sample = augment(sample)                  # one image
    sample = augment(sample, partner=other)   # mixup, when augment.wants_partner

`policy` is "default" or "none"; `params` an AugmentParams (AugmentParams.from_cfg reads the cfg's
[net] and [detection] options); `rng` a numpy Generator (the only source of randomness, so a seed
reproduces a run). The result is a Sample whose boxes are still normalised to its image; the
trainer turns its image into the network input with detector.model.preprocess.to_blob, exactly as
inference does. With "none" (and no mixup) the sample comes back untouched, so that resize is the
only change. With "default", in Darknet's order: jitter crop, resize to the network input, random
horizontal flip, HSV distortion; then, each with probability CORRUPTION_P, the corruptions a robot's
camera produces (blur, noise, JPEG artefacts, dimming); then mixup when a partner is given.

Every step is also a plain function, tested on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..model.cfg import _sections
from ..model.preprocess import resize_bgr
from .labels import LabelBoxes, Sample

MIN_BOX_SIZE = 0.005     # Darknet drops truth boxes narrower or lower than this
CORRUPTION_P = 0.1       # chance of each corruption per image under the default policy
POLICIES = ("default", "none")


@dataclass(frozen=True)
class AugmentParams:
    """Network input size and Darknet's augmentation ranges. A cfg that leaves a range out gets
    the values of Darknet's own YOLO v1 training cfgs rather than Darknet's no-op defaults."""
    width: int
    height: int
    jitter: float = 0.2      # each side moves by up to this fraction of the image, in or out
    saturation: float = 1.5  # saturation scaled by s or 1/s, s uniform in [1, saturation]
    exposure: float = 1.5    # value (brightness) likewise
    hue: float = 0.1         # hue shifted by up to this fraction of the colour circle

    @classmethod
    def from_cfg(cls, path) -> "AugmentParams":
        with open(path, encoding="utf-8") as f:
            sections = _sections(f.read(), str(path))
        options = {}
        for kind, values, _ in sections:
            if kind in ("net", "network", "detection"):
                options.update(values)
        fields = {"width": int(options["width"]), "height": int(options["height"])}
        for key in ("jitter", "saturation", "exposure", "hue"):
            if key in options:
                fields[key] = float(options[key])
        return cls(**fields)


# --- geometry ------------------------------------------------------------------------------------

def boxes_to_corners(boxes_norm: np.ndarray) -> np.ndarray:
    cx, cy, w, h = boxes_norm.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def corners_to_boxes(corners: np.ndarray) -> np.ndarray:
    left, top, right, bottom = corners.T
    return np.stack([(left + right) / 2, (top + bottom) / 2, right - left, bottom - top], axis=1)


def keep_boxes(labels: LabelBoxes, corners: np.ndarray) -> LabelBoxes:
    """Clip corners to the image and drop boxes that (nearly) left it, as Darknet does."""
    corners = np.clip(corners, 0.0, 1.0)
    boxes = corners_to_boxes(corners).astype(np.float32)
    kept = (boxes[:, 2] >= MIN_BOX_SIZE) & (boxes[:, 3] >= MIN_BOX_SIZE)
    return LabelBoxes(labels.class_ids[kept], boxes[kept], labels.weights[kept])


def crop(image_bgr: np.ndarray, labels: LabelBoxes, left: int, right: int, top: int, bottom: int) -> tuple:
    """Remove `left` ... `bottom` pixels from each side (negative: extend, repeating the border
    pixels as Darknet's crop does); boxes follow the crop, clipped, and dropped once outside."""
    height, width = image_bgr.shape[:2]
    new_w, new_h = width - left - right, height - top - bottom
    padded = cv2.copyMakeBorder(image_bgr, max(0, -top), max(0, -bottom), max(0, -left), max(0, -right),
                                cv2.BORDER_REPLICATE)
    y0, x0 = max(0, top), max(0, left)
    cropped = padded[y0:y0 + new_h, x0:x0 + new_w]
    scale = np.array([width / new_w, height / new_h] * 2, np.float64)
    shift = np.array([left / new_w, top / new_h] * 2, np.float64)
    corners = boxes_to_corners(labels.boxes_norm.astype(np.float64)) * scale - shift
    return np.ascontiguousarray(cropped), keep_boxes(labels, corners)


def random_jitter_crop(image_bgr: np.ndarray, labels: LabelBoxes, jitter: float, rng) -> tuple:
    """Darknet's jitter: each side moves by a whole number of pixels uniform in +-jitter*size."""
    height, width = image_bgr.shape[:2]
    dw, dh = int(width * jitter), int(height * jitter)
    left, right = (int(v) for v in rng.uniform(-dw, dw, 2))
    top, bottom = (int(v) for v in rng.uniform(-dh, dh, 2))
    return crop(image_bgr, labels, left, right, top, bottom)


def resize(image_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Stretch to the network input (no letterbox) with inference's resize, Darknet's own."""
    return resize_bgr(image_bgr, width, height)


def hflip(image_bgr: np.ndarray, labels: LabelBoxes) -> tuple:
    boxes = labels.boxes_norm.copy()
    boxes[:, 0] = 1.0 - boxes[:, 0]
    return np.ascontiguousarray(image_bgr[:, ::-1]), LabelBoxes(labels.class_ids, boxes, labels.weights)


# --- colour --------------------------------------------------------------------------------------

def distort_hsv(image_bgr: np.ndarray, hue_shift: float, saturation_scale: float, exposure_scale: float) -> np.ndarray:
    """Darknet's distort_image: hue += shift (fraction of the circle, wrapping), S and V scaled,
    then back to colour and clipped."""
    hsv = cv2.cvtColor(image_bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)  # H in degrees
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * hue_shift, 360.0)
    hsv[..., 1] *= saturation_scale
    hsv[..., 2] *= exposure_scale
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return np.clip(np.rint(bgr * 255.0), 0, 255).astype(np.uint8)


def random_scale(limit: float, rng) -> float:
    """Darknet's rand_scale: s uniform between 1 and `limit`, then s or 1/s with equal chance."""
    scale = rng.uniform(min(1.0, limit), max(1.0, limit))
    return float(scale if rng.random() < 0.5 else 1.0 / scale)


def random_hsv(image_bgr: np.ndarray, hue: float, saturation: float, exposure: float, rng) -> np.ndarray:
    return distort_hsv(image_bgr, rng.uniform(-hue, hue), random_scale(saturation, rng), random_scale(exposure, rng))


# --- corruptions (what a robot's camera does to images) ------------------------------------------

def blur(image_bgr: np.ndarray, sigma_px: float) -> np.ndarray:
    return cv2.GaussianBlur(image_bgr, (0, 0), sigma_px)


def motion_blur(image_bgr: np.ndarray, length_px: int, angle_deg: float) -> np.ndarray:
    """A shaking camera: average along a line of `length_px` pixels."""
    kernel = np.zeros((length_px, length_px), np.float32)
    kernel[length_px // 2, :] = 1.0
    centre = ((length_px - 1) / 2, (length_px - 1) / 2)
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D(centre, angle_deg, 1.0), (length_px, length_px))
    return cv2.filter2D(image_bgr, -1, kernel / max(kernel.sum(), 1e-6))


def noise(image_bgr: np.ndarray, sigma_levels: float, rng) -> np.ndarray:
    """Sensor noise: Gaussian, `sigma_levels` out of 255."""
    noisy = image_bgr.astype(np.float32) + rng.normal(0.0, sigma_levels, image_bgr.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def jpeg(image_bgr: np.ndarray, quality: int) -> np.ndarray:
    """Compression artefacts of a webcam's MJPG stream."""
    ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else image_bgr


def brightness(image_bgr: np.ndarray, factor: float) -> np.ndarray:
    """Dim (factor < 1) or over-exposed (> 1) light, applied to every channel."""
    return np.clip(np.rint(image_bgr.astype(np.float32) * factor), 0, 255).astype(np.uint8)


def random_corruptions(image_bgr: np.ndarray, rng, probability: float = CORRUPTION_P) -> np.ndarray:
    if rng.random() < probability:
        image_bgr = (blur(image_bgr, rng.uniform(0.5, 2.0)) if rng.random() < 0.5 else
                     motion_blur(image_bgr, int(rng.integers(3, 10)), rng.uniform(0, 180)))
    if rng.random() < probability:
        image_bgr = noise(image_bgr, rng.uniform(2.0, 12.0), rng)
    if rng.random() < probability:
        image_bgr = jpeg(image_bgr, int(rng.integers(15, 60)))
    if rng.random() < probability:
        image_bgr = brightness(image_bgr, rng.uniform(0.25, 0.8))
    return image_bgr


# --- mixup ---------------------------------------------------------------------------------------

def mixup(first: Sample, second: Sample, lam: float) -> Sample:
    """Image lam*A + (1-lam)*B (same size), boxes of both, weighted lam and 1-lam in the loss."""
    if first.image_bgr.shape != second.image_bgr.shape:
        raise ValueError(f"mixup needs images of one size, got {first.image_bgr.shape} and {second.image_bgr.shape}")
    mixed = first.image_bgr.astype(np.float32) * lam + second.image_bgr.astype(np.float32) * (1.0 - lam)
    a, b = first.labels, second.labels
    labels = LabelBoxes(np.concatenate([a.class_ids, b.class_ids]), np.concatenate([a.boxes_norm, b.boxes_norm]),
                        np.concatenate([a.weights * lam, b.weights * (1.0 - lam)]))
    return Sample(np.clip(np.rint(mixed), 0, 255).astype(np.uint8), labels, f"{first.path} + {second.path}")


# --- the trainer's entry point -------------------------------------------------------------------

class Augmenter:
    def __init__(self, policy: str, params: AugmentParams, rng, mixup_alpha: float = 0.0):
        if policy not in POLICIES:
            raise ValueError(f"augment policy must be one of {', '.join(POLICIES)}, found {policy!r}")
        self.policy, self.params, self.rng, self.mixup_alpha = policy, params, rng, mixup_alpha

    @property
    def wants_partner(self) -> bool:
        return self.mixup_alpha > 0

    def one(self, sample: Sample) -> Sample:
        p, rng = self.params, self.rng
        if self.policy == "none":
            return sample
        image, labels = random_jitter_crop(sample.image_bgr, sample.labels, p.jitter, rng)
        image = resize(image, p.width, p.height)
        if rng.random() < 0.5:
            image, labels = hflip(image, labels)
        image = random_hsv(image, p.hue, p.saturation, p.exposure, rng)
        return Sample(random_corruptions(image, rng), labels, sample.path)

    def __call__(self, sample: Sample, partner: Sample | None = None) -> Sample:
        sample = self.one(sample)
        if partner is None or not self.wants_partner:
            return sample
        partner = self.one(partner)
        size = (self.params.width, self.params.height)
        first = Sample(resize(sample.image_bgr, *size), sample.labels, sample.path)
        second = Sample(resize(partner.image_bgr, *size), partner.labels, partner.path)
        return mixup(first, second, float(self.rng.beta(self.mixup_alpha, self.mixup_alpha)))


def make_augmenter(policy: str, params: AugmentParams, rng, mixup_alpha: float = 0.0) -> Augmenter:
    return Augmenter(policy, params, rng, mixup_alpha)
