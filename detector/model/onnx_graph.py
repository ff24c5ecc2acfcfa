"""The network as an in-memory ONNX graph, built from the loaded parameters.

One graph serves every non-Chainer engine (onnxruntime, OpenCV's DNN module): it works the same
for modern and legacy Darknet files (OpenCV's own Darknet importer refuses legacy files, and
OpenCV 5 has none at all), and nothing is written to disk.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .cfg import Connected, Convolutional, Crop, MaxPool
from .chainer_net import DARKNET_BN_EPSILON
from .network import Model

INPUT_NAME = "image"
OUTPUT_NAME = "raw"


def fold_batch_norm(params: dict) -> tuple:
    """Darknet batch norm folded into the convolution: (weights, biases), computed in float64."""
    factor = params["scales"].astype(np.float64) / (np.sqrt(params["rolling_variance"].astype(np.float64)) + DARKNET_BN_EPSILON)
    weights = params["weights"].astype(np.float64) * factor[:, None, None, None]
    biases = params["biases"].astype(np.float64) - params["rolling_mean"].astype(np.float64) * factor
    return weights.astype(np.float32), biases.astype(np.float32)


def build_onnx(model: Model) -> bytes:
    """Serialised ONNX model: input 'image' (N, C, H, W) RGB in [0, 1], output 'raw' (N, outputs)."""
    spec = model.spec
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
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def activate(activation: str) -> None:
        if activation == "leaky":
            add("LeakyRelu", [current], alpha=0.1)
        elif activation == "relu":
            add("Relu", [current])

    for index, layer in enumerate(spec.layers):
        p = model.params[index]
        if isinstance(layer, Crop):
            add("Mul", [current, constant("crop_scale", np.array(2.0))])
            add("Sub", [current, constant("crop_shift", np.array(1.0))])
        elif isinstance(layer, Convolutional):
            weights, biases = fold_batch_norm(p) if layer.batch_normalize else (p["weights"], p["biases"])
            add("Conv", [current, constant(f"w{index}", weights), constant(f"b{index}", biases)],
                kernel_shape=[layer.size, layer.size], strides=[layer.stride] * 2, pads=[layer.pad] * 4)
            activate(layer.activation)
        elif isinstance(layer, MaxPool):
            add("MaxPool", [current], kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2)
        elif isinstance(layer, Connected):
            if not flattened:  # Darknet flattens in CHW order, as ONNX Flatten does
                add("Flatten", [current], axis=1)
                flattened = True
            add("Gemm", [current, constant(f"w{index}", p["weights"]), constant(f"b{index}", p["biases"])], transB=1)
            activate(layer.activation)
    nodes[-1].output[0] = OUTPUT_NAME
    graph = helper.make_graph(
        nodes, spec.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", spec.channels, spec.height, spec.width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", spec.outputs])],
        initializers)
    # Opset 13 and IR 8 are read by onnxruntime and by OpenCV 4.x and 5.x alike.
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(onnx_model)
    return onnx_model.SerializeToString()
