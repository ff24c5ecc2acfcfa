"""The network as an ONNX graph, built from the loaded parameters.

One graph serves every non-Chainer engine (onnxruntime, OpenCV's DNN module): it works the same
for modern and legacy Darknet files (OpenCV's own Darknet importer refuses legacy files, and
OpenCV 5 has none at all). Parameters that are views of a mapped weights file can be referenced
by their place in that file instead of copied into the graph (`reference_file`): onnxruntime then
reads them from the file itself and the graph is a few kilobytes, so the process holds the
parameters once, in the engine.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .cfg import Connected, Convolutional, Crop, MaxPool
from .network import DARKNET_BN_EPSILON, Model

INPUT_NAME = "image"
OUTPUT_NAME = "raw"


def fold_batch_norm(params: dict) -> tuple:
    """Darknet batch norm folded into the convolution: (weights, biases), computed in float64."""
    factor, shift = batch_norm_scale_shift(params, np.float64)
    return (params["weights"].astype(np.float64) * factor[:, None, None, None]).astype(np.float32), shift.astype(np.float32)


def batch_norm_scale_shift(params: dict, dtype=np.float32) -> tuple:
    """Darknet's test-time batch norm as y = conv * factor + shift per channel (computed in float64)."""
    factor = params["scales"].astype(np.float64) / (np.sqrt(params["rolling_variance"].astype(np.float64)) + DARKNET_BN_EPSILON)
    shift = params["biases"].astype(np.float64) - params["rolling_mean"].astype(np.float64) * factor
    return factor.astype(dtype), shift.astype(dtype)


def _file_tensor(name: str, shape: tuple, location: str, offset: int, length: int) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape, data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def build_onnx(model: Model, reference_file: bool = False, layers: int | None = None) -> onnx.ModelProto:
    """ONNX model: input 'image' (N, C, H, W) RGB in [0, 1], output 'raw' (N, outputs).

    reference_file: parameters that lie in `model.mapped_file` become external data (location:
    the file's name, so the loader must be told the file's folder); all others are embedded.
    layers: only the first `layers` cfg layers, in inference mode; 'raw' is then their output
    (a feature map or vector, its shape left to the runtime). Training runs frozen layers this way.
    """
    spec = model.spec
    count = len(spec.layers) if layers is None else layers
    mapped = model.mapped_file if reference_file else None
    nodes, initializers = [], []
    current = INPUT_NAME
    flattened = False

    def add(op: str, inputs: list, **attrs) -> str:
        nonlocal current
        output = f"{op.lower()}{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        current = output
        return output

    def constant(name: str, value: np.ndarray) -> str:
        offset = mapped.file_offset(value) if mapped else None
        if offset is None:
            initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        else:
            initializers.append(_file_tensor(name, value.shape, mapped.path.name, offset, value.nbytes))
        return name

    def activate(activation: str) -> None:
        if activation == "leaky":
            add("LeakyRelu", [current], alpha=0.1)
        elif activation == "relu":
            add("Relu", [current])

    for index, layer in enumerate(spec.layers[:count]):
        p = model.params[index]
        if isinstance(layer, Crop):
            add("Mul", [current, constant("crop_scale", np.array(2.0))])
            add("Sub", [current, constant("crop_shift", np.array(1.0))])
        elif isinstance(layer, Convolutional):
            conv = dict(kernel_shape=[layer.size, layer.size], strides=[layer.stride] * 2, pads=[layer.pad] * 4)
            if layer.batch_normalize and not mapped:
                weights, biases = fold_batch_norm(p)
                add("Conv", [current, constant(f"w{index}", weights), constant(f"b{index}", biases)], **conv)
            elif layer.batch_normalize:
                # Kept apart from the weights (which stay in the file); onnxruntime folds the
                # scale into the convolution when it optimises the graph.
                factor, shift = batch_norm_scale_shift(p)
                add("Conv", [current, constant(f"w{index}", p["weights"])], **conv)
                add("Mul", [current, constant(f"bn_scale{index}", factor.reshape(-1, 1, 1))])
                add("Add", [current, constant(f"bn_shift{index}", shift.reshape(-1, 1, 1))])
            else:
                add("Conv", [current, constant(f"w{index}", p["weights"]), constant(f"b{index}", p["biases"])], **conv)
            activate(layer.activation)
        elif isinstance(layer, MaxPool):
            add("MaxPool", [current], kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2)
        elif isinstance(layer, Connected):
            if not flattened:  # Darknet flattens in CHW order, as ONNX Flatten does
                add("Flatten", [current], axis=1)
                flattened = True
            weights = p["weights"]  # [out][in]; a legacy file's is the transposed view of its [in][out]
            transposed = not weights.flags.c_contiguous and weights.T.flags.c_contiguous
            add("Gemm", [current, constant(f"w{index}", weights.T if transposed else weights),
                         constant(f"b{index}", p["biases"])], transB=0 if transposed else 1)
            activate(layer.activation)
    if not nodes:  # only layers that are the identity at test time (dropout)
        add("Identity", [current])
    nodes[-1].output[0] = OUTPUT_NAME
    if count == len(spec.layers):
        output_shape = ["N", spec.outputs]
    else:  # sizes left to the runtime; only the rank is declared
        output_shape = ["N", "features"] if flattened else ["N", "channels", "rows", "columns"]
    graph = helper.make_graph(
        nodes, spec.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", spec.channels, spec.height, spec.width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, output_shape)],
        initializers)
    # Opset 13 and IR 8 are read by onnxruntime and by OpenCV 4.x and 5.x alike.
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    if not mapped:  # the checker would look for the referenced file in the working directory
        onnx.checker.check_model(onnx_model)
    return onnx_model
