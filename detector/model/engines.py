"""Inference engines: each turns a preprocessed blob into the raw detection-layer outputs.

All engines compute the same function from the same Model; they differ only in speed and in
where they run. `create_engine` is the one place that picks an engine and a device.
"""
from __future__ import annotations

import logging
import os
import re

import numpy as np

from ..errors import UserError
from .network import Model

log = logging.getLogger(__name__)

DEFAULT_ENGINE = "onnxruntime"  # the fastest CPU engine measured on the 2-core target (README)


class Engine:
    name = ""

    def __init__(self, model: Model, device: str):
        self.model = model
        self.device = device

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """blob: (N, C, H, W) float32 RGB in [0, 1]. Returns (N, outputs) float32."""
        raise NotImplementedError


class ChainerEngine(Engine):
    name = "chainer"

    def __init__(self, model: Model, device: str):
        super().__init__(model, device)
        from . import chainer_compat  # noqa: F401  (before chainer)
        import chainer
        from .chainer_net import TinyYoloV1
        self._chainer = chainer
        self.net = TinyYoloV1(model)
        if device.startswith("gpu"):
            import cupy
            gpu_id = int(device.split(":")[1])
            # Moved once here; per frame only the input goes to the GPU and the output comes back.
            self.net.to_device(f"@cupy:{gpu_id}")
            self._to_device = lambda array: cupy.asarray(array)
            self._to_host = cupy.asnumpy
        else:
            self._to_device = self._to_host = np.asarray

    def infer(self, blob: np.ndarray) -> np.ndarray:
        chainer = self._chainer
        with chainer.using_config("train", False), chainer.using_config("enable_backprop", False):
            output = self.net(self._to_device(blob)).array
        return self._to_host(output).astype(np.float32, copy=False)


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, model: Model, device: str):
        super().__init__(model, device)
        import onnxruntime as ort
        from .onnx_graph import INPUT_NAME, build_onnx
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(build_onnx(model), options, providers=["CPUExecutionProvider"])
        self._input_name = INPUT_NAME

    def infer(self, blob: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input_name: blob})[0]


class OpenCVEngine(Engine):
    name = "opencv"

    def __init__(self, model: Model, device: str):
        super().__init__(model, device)
        import cv2
        from .onnx_graph import build_onnx
        self.net = cv2.dnn.readNetFromONNX(np.frombuffer(build_onnx(model), np.uint8))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def infer(self, blob: np.ndarray) -> np.ndarray:
        self.net.setInput(blob)
        return self.net.forward().reshape(blob.shape[0], -1)


ENGINES = {engine.name: engine for engine in (OnnxRuntimeEngine, OpenCVEngine, ChainerEngine)}
GPU_ENGINES = ("chainer",)


def _gpu_count() -> tuple:
    """(number of CUDA devices CuPy sees, why there are none)."""
    try:
        import cupy
    except ImportError:
        return 0, "CuPy is not installed (install the GPU extra: pip install -e '.[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy raises its own CUDA error types, varying with the driver
        return 0, f"CuPy is installed but CUDA is not usable ({error})"
    return count, "" if count else "CuPy sees no CUDA device"


def resolve(engine: str | None, device: str) -> tuple:
    """(engine name, device) from the user's choices: device is 'cpu' or 'gpu:N'."""
    if engine is not None and engine not in ENGINES:
        raise UserError(f"unknown engine '{engine}'; choose one of: {', '.join(ENGINES)}")
    match = re.fullmatch(r"gpu(?::(\d+))?", device)
    if device == "cpu":
        return engine or DEFAULT_ENGINE, "cpu"
    if device == "auto":
        count, why = _gpu_count()
        if count and engine in (None, *GPU_ENGINES):
            log.info("--device auto: using the GPU (chainer on gpu:0)")
            return "chainer", "gpu:0"
        chosen = engine or DEFAULT_ENGINE
        log.info("--device auto: using the CPU (%s engine)%s", chosen, f": {why}" if why else "")
        return chosen, "cpu"
    if match is None:
        raise UserError(f"--device must be cpu, gpu, gpu:N or auto, found '{device}'")
    if engine not in (None, *GPU_ENGINES):
        raise UserError(f"engine '{engine}' runs on the CPU only; the GPU engine is 'chainer' (--engine chainer --device {device})")
    gpu_id = int(match.group(1) or 0)
    count, why = _gpu_count()
    if gpu_id >= count:
        reason = why or f"CuPy sees {count} CUDA device(s), so gpu:{gpu_id} does not exist"
        raise UserError(f"--device {device} needs CuPy and a CUDA GPU: {reason}. "
                        "Use --device cpu, or --device auto to fall back to the CPU.")
    return "chainer", f"gpu:{gpu_id}"


def create_engine(model: Model, engine: str | None = None, device: str = "cpu") -> Engine:
    name, resolved_device = resolve(engine, device)
    return ENGINES[name](model, resolved_device)
