"""The int8 graph for onnxruntime: a static quantization of the same ONNX graph, cached beside the
weights file under a name that carries the digest of everything it depends on.

Recipe (measured: docs/measurements/int8.md): QDQ format, int8 weights per output channel, uint8 activations
with min/max ranges calibrated on a handful of frames, batch norm folded first. The last connected
layer stays float32: it writes the detection layer's values directly, so boxes and scores are not
rounded to an activation grid (quantized, it moved a planted person's outputs by 2% of the largest;
float32, a file whose last layer is all zeros is reproduced exactly).

Calibration frames: generated scenes (smooth colour fields, hard-edged shapes, sensor-like noise,
at camera size), which the project can always make; or, for a user's own weights, their own
photos (`--calibration DIR`, JPEG/PNG, a few dozen frames from the robot's camera are best; at
most MAX_PHOTOS of them, evenly spread over the folder's sorted names, are used).
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import EX_CONFIG, UserError
from .network import Model
from .preprocess import to_blob

log = logging.getLogger(__name__)

RECIPE = "qdq-s8w-perchannel-u8a-minmax-lastfp32-v1"  # change it when the recipe changes: caches go stale
GENERATED_FRAMES = 16
MAX_PHOTOS = 64  # calibration keeps every activation of every frame in memory
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_warned_unwritable = set()


def generated_frames(count: int = GENERATED_FRAMES, width: int = 640, height: int = 480) -> list:
    """Camera-sized BGR frames with the statistics of real ones: smooth gradients, sharp edges, noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for _ in range(count):
        image = np.stack([128 + 100 * np.sin(x / rng.uniform(10, 90) + phase) * np.cos(y / rng.uniform(10, 90) - phase)
                          for phase in rng.uniform(0, 3, 3)], axis=-1)
        for _ in range(8):
            corner_a, corner_b = rng.integers(0, width, 2), rng.integers(0, height, 2)
            cv2.rectangle(image, (int(corner_a[0]), int(corner_b[0])), (int(corner_a[1]), int(corner_b[1])),
                          tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
        image += rng.normal(0, rng.uniform(2, 20), image.shape)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return frames


def calibration_frames(directory=None) -> tuple:
    """(frames, description, digest of the frames) from `directory`, or generated ones."""
    if directory is None:
        frames, description = generated_frames(), f"{GENERATED_FRAMES} generated frames"
    else:
        folder = Path(directory)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, MAX_PHOTOS).astype(int)] if len(paths) > MAX_PHOTOS else paths
        frames = [frame for frame in (cv2.imread(str(p)) for p in paths) if frame is not None]
        if not frames:
            raise UserError(f"--calibration {folder}: expected a folder with JPEG or PNG photos (frames from the "
                            f"robot's camera are best), found {'none' if folder.is_dir() else 'no such folder'}", EX_CONFIG)
        description = f"{len(frames)} photos from {folder}"
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(str(frame.shape).encode())
        digest.update(frame.tobytes())
    return frames, description, digest.hexdigest()


def quantize(model: Model, frames: list, output: Path) -> None:
    """Write the int8 graph of `model`, calibrated on `frames`, to `output`."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from .onnx_graph import INPUT_NAME, build_onnx
    graph = build_onnx(model)  # parameters embedded and batch norm folded
    for index, node in enumerate(graph.graph.node):
        node.name = node.name or f"{node.op_type.lower()}{index}"
    last_connected = [node.name for node in graph.graph.node if node.op_type == "Gemm"][-1:]
    spec = model.spec

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.blobs = (to_blob(frame, spec.width, spec.height) for frame in frames)

        def get_next(self):
            blob = next(self.blobs, None)
            return None if blob is None else {INPUT_NAME: blob}

    # onnxruntime's quantizer suggests its shape-inference pre-pass on the root logger; the graph
    # is built with every shape known, so the advice is noise in the daemon's log.
    advice = _DropMessages("Please consider")
    logging.getLogger().addFilter(advice)
    try:
        quantize_static(graph, output, Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=last_connected, calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.getLogger().removeFilter(advice)


class _DropMessages(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def cache_key(model: Model, weights_sha256: str, calibration_digest: str) -> str:
    return hashlib.sha256(f"{RECIPE}\n{weights_sha256}\n{model.spec}\n{calibration_digest}".encode()).hexdigest()


def int8_graph(model: Model, calibration=None, refresh: bool = False) -> bytes:
    """The serialised int8 graph: read from the cache beside the weights file when its key matches
    (unless `refresh`), else built (and cached there when the folder is writable)."""
    from .weights_store import sha256_of
    frames, description, calibration_digest = calibration_frames(calibration)
    cache = None
    if model.mapped_file is not None:
        weights_path = model.mapped_file.path
        key = cache_key(model, sha256_of(weights_path), calibration_digest)
        cache = weights_path.with_name(f"{weights_path.name}.int8-{key[:16]}.onnx")
        if cache.is_file() and not refresh:
            log.info("int8 graph from cache %s", cache)
            return cache.read_bytes()
    log.info("building the int8 graph of %s, calibrated on %s (once per weights file)", model.name, description)
    with tempfile.TemporaryDirectory(prefix="robot-detector-int8-") as folder:
        built = Path(folder) / "int8.onnx"
        quantize(model, frames, built)
        data = built.read_bytes()
    if cache is not None:
        _write_cache(cache, data)
    return data


def _write_cache(cache: Path, data: bytes) -> None:
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.part")
    try:
        # Written whole and then renamed, so a reader never sees half a file.
        partial.write_bytes(data)
        partial.replace(cache)
        log.info("int8 graph cached as %s", cache)
    except OSError as error:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
        if cache.parent not in _warned_unwritable:  # say it once, not at every engine built
            _warned_unwritable.add(cache.parent)
            log.warning("cannot cache the int8 graph in %s (%s): built in memory, and again at every start",
                        cache.parent, error.strerror or error)
