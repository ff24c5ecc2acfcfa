"""Inference engines: each turns a preprocessed blob into the raw detection-layer outputs.

All engines compute the same function from the same Model; they differ only in speed and in
where they run. `create_engine` is the one place that picks an engine and a device.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re

import numpy as np

from ..errors import EX_CONFIG, UserError
from .network import Model

log = logging.getLogger(__name__)

DEFAULT_ENGINE = "onnxruntime"  # the fastest CPU engine measured on the 2-core target (docs/measurements/engines.md)


PRECISIONS = ("fp32", "int8")
GPU_DEVICE = re.compile(r"gpu(?::(\d+))?")  # gpu or gpu:N; the other devices are "cpu" and "auto"


class Engine:
    name = ""
    precisions = ("fp32",)

    def __init__(self, model: Model, device: str, precision: str = "fp32", calibration=None):
        self.model = model
        self.device = device
        self.precision = precision

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """blob: (N, C, H, W) float32 RGB in [0, 1]. Returns (N, outputs) float32."""
        raise NotImplementedError


def device_context(device: str):
    """Where every CuPy call (allocations, kernels, copies) must run for `device` ("cpu" or
    "gpu:N"): outside it CuPy uses the current device, 0, whatever gpu:N says."""
    if device.startswith("gpu"):
        import cupy
        return cupy.cuda.Device(int(device.split(":")[1]))
    return contextlib.nullcontext()


class ChainerEngine(Engine):
    name = "chainer"

    def __init__(self, model: Model, device: str, precision: str = "fp32", calibration=None):
        super().__init__(model, device, precision)
        from . import chainer_compat  # noqa: F401  (before chainer)
        import chainer
        from .chainer_net import TinyYoloV1
        self._chainer = chainer
        self.net = TinyYoloV1(model)
        if device.startswith("gpu"):
            import cupy
            with device_context(device):
                # Moved once here; per frame only the input goes to the GPU and the output comes back.
                self.net.to_device(f"@cupy:{device.split(':')[1]}")
            self._to_device = cupy.asarray
            self._to_host = cupy.asnumpy
        else:
            self._to_device = self._to_host = np.asarray

    def infer(self, blob: np.ndarray) -> np.ndarray:
        chainer = self._chainer
        with device_context(self.device), chainer.using_config("train", False), \
                chainer.using_config("enable_backprop", False):
            output = self.net(self._to_device(blob)).array
            return self._to_host(output).astype(np.float32, copy=False)


def onnxruntime_options():
    """Session options of every onnxruntime session: all cores, full graph optimisation, and idle
    threads that sleep instead of spinning (the capture and publishing threads need the cores)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def onnxruntime_fp32_session(model: Model, layers: int | None = None, options=None):
    """An fp32 session of `model`'s graph with its parameters embedded (the first `layers` layers
    only, if given: see onnx_graph.build_onnx); `options` default to onnxruntime_options()."""
    import onnxruntime as ort
    from .onnx_graph import build_onnx
    return ort.InferenceSession(build_onnx(model, layers=layers).SerializeToString(), options or onnxruntime_options(),
                                providers=["CPUExecutionProvider"])


class OnnxRuntimeEngine(Engine):
    """`low_memory`: fp32 without weight prepacking: a packed copy of each matrix is kept beside
    the plain one while the graph loads (about 65 MB more at peak for yolov1-tiny), but the packed
    kernels are what makes onnxruntime fast (docs/measurements/engines.md)."""
    name = "onnxruntime"
    precisions = PRECISIONS

    def __init__(self, model: Model, device: str, precision: str = "fp32", calibration=None, low_memory: bool = False):
        super().__init__(model, device, precision)
        import onnxruntime as ort
        from .onnx_graph import INPUT_NAME
        options = onnxruntime_options()
        self._input_name = INPUT_NAME
        if precision == "int8":  # int8 kernels need their weights prepacked to be fast
            self.session = self._int8_session(ort, options, calibration)
        else:
            if low_memory:
                options.add_session_config_entry("session.disable_prepacking", "1")
            self.session = self._fp32_session(ort, options)

    def _fp32_session(self, ort, options):
        from .onnx_graph import build_onnx
        providers = ["CPUExecutionProvider"]
        mapped = self.model.mapped_file
        if mapped is None:
            return onnxruntime_fp32_session(self.model, options=options)
        # Parameters from a weights file are read by onnxruntime from that file: the graph handed
        # over holds none of them, so no serialised copy exists beside the engine's own.
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(mapped.path.parent))
        state = ort.capi.onnxruntime_pybind11_state
        try:
            graph = build_onnx(self.model, reference_file=True).SerializeToString()
            return ort.InferenceSession(graph, options, providers=providers)
        except (state.Fail, state.InvalidGraph, state.NoSuchFile, state.RuntimeException) as error:
            # onnxruntime before 1.21 has no folder option for graphs handed over in memory
            # (1.19, the last for Python 3.9, raises RuntimeException: "model_path must not be empty")
            log.warning("onnxruntime %s cannot read the parameters from %s itself (%s); the graph carries "
                        "a copy of them (about 3x the file's size in memory at start)", ort.__version__, mapped.path, error)
            return ort.InferenceSession(build_onnx(self.model).SerializeToString(), options, providers=providers)

    def _int8_session(self, ort, options, calibration):
        from .quantize import int8_graph
        state = ort.capi.onnxruntime_pybind11_state
        try:
            return ort.InferenceSession(int8_graph(self.model, calibration), options, providers=["CPUExecutionProvider"])
        except (state.Fail, state.InvalidProtobuf, state.InvalidGraph) as error:  # a damaged cache file: build it again
            log.warning("the cached int8 graph does not load (%s); building it again", error)
            return ort.InferenceSession(int8_graph(self.model, calibration, refresh=True), options,
                                        providers=["CPUExecutionProvider"])

    def infer(self, blob: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input_name: blob})[0]


class OpenCVEngine(Engine):
    name = "opencv"

    def __init__(self, model: Model, device: str, precision: str = "fp32", calibration=None):
        super().__init__(model, device, precision)
        import cv2
        from .onnx_graph import build_onnx
        self.net = cv2.dnn.readNetFromONNX(np.frombuffer(build_onnx(model).SerializeToString(), np.uint8))
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
    match = GPU_DEVICE.fullmatch(device)
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


def create_engine(model: Model, engine: str | None = None, device: str = "cpu", precision: str = "fp32",
                  calibration=None, low_memory: bool = False) -> Engine:
    """calibration: a folder of photos for the int8 graph (None: generated frames). low_memory: the
    smaller footprint where an engine has a choice (onnxruntime fp32: no weight prepacking)."""
    name, resolved_device = resolve(engine, device)
    check_precision(name, precision)
    if name == OnnxRuntimeEngine.name:
        return OnnxRuntimeEngine(model, resolved_device, precision, calibration, low_memory)
    return ENGINES[name](model, resolved_device, precision, calibration)


def check_precision(engine: str, precision: str) -> None:
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, found '{precision}'", EX_CONFIG)
    if engine in ENGINES and precision not in ENGINES[engine].precisions:
        supporting = [name for name, cls in ENGINES.items() if precision in cls.precisions]
        raise UserError(f"engine '{engine}' computes in fp32 only; --precision {precision} runs on "
                        f"{', '.join(supporting)} (--engine {supporting[0]}), or use --precision fp32", EX_CONFIG)
