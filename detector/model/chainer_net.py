"""The network as a Chainer Chain, built from a NetworkSpec; runs on NumPy or CuPy."""
from __future__ import annotations

from . import chainer_compat  # noqa: F401  (before chainer)
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from .cfg import Connected, Convolutional, Crop, MaxPool
from .network import DARKNET_BN_EPSILON, Model


class DarknetBatchNorm(chainer.Link):
    """Darknet's test-time batch norm: scale * (x - mean) / (sqrt(var) + eps) + bias.

    The epsilon goes after the square root (unlike L.BatchNormalization), so this is its own link.
    """

    def __init__(self, size: int):
        super().__init__()
        with self.init_scope():
            self.scale = chainer.Parameter(np.ones(size, np.float32))
            self.bias = chainer.Parameter(np.zeros(size, np.float32))
        self.add_persistent("mean", np.zeros(size, np.float32))
        self.add_persistent("variance", np.ones(size, np.float32))

    def forward(self, x):
        xp = self.xp
        factor = self.scale.array / (xp.sqrt(self.variance) + DARKNET_BN_EPSILON)
        shift = self.bias.array - self.mean * factor
        return F.bias(F.scale(x, factor, axis=1), shift, axis=1)


class DarknetLeaky(chainer.FunctionNode):
    """Darknet's leaky activation: y = x where x > 0, else 0.1 x; gradient 1 there, else 0.1.

    Written with whole-array arithmetic because F.leaky_relu (boolean-mask indexing) and xp.where
    took several times longer on NumPy; measured on the shapes cfg's first layer, docs/measurements/training.md."""

    SLOPE = 0.1

    def forward(self, inputs):
        x, = inputs
        xp = chainer.backend.get_array_module(x)
        self.retain_inputs((0,))
        return xp.maximum(x, x * x.dtype.type(self.SLOPE)),  # max(x, 0.1 x) is x for x > 0, else 0.1 x

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        slope = self.SLOPE
        # (x > 0) * 0.9 + 0.1: exactly 1 or 0.1 in the input's dtype (the test checks both values)
        factor = (x.array > 0).astype(x.dtype)
        factor *= x.dtype.type(1 - slope)
        factor += x.dtype.type(slope)
        return grad_outputs[0] * factor,


def _activate(x, activation: str):
    if activation == "leaky":
        return DarknetLeaky().apply((x,))[0]
    if activation == "relu":
        return F.relu(x)
    return x


class TinyYoloV1(chainer.Chain):
    """Tiny-YOLO v1 (either variant) as described by its cfg. Input: (N, C, H, W) float32 RGB in
    [0, 1]; output: (N, 1470) raw detection-layer values."""

    norm_link = DarknetBatchNorm  # the trainer substitutes one that also trains

    def __init__(self, model: Model):
        super().__init__()
        self.spec = model.spec
        with self.init_scope():
            for index, layer in enumerate(self.spec.layers):
                p = model.params[index]
                if isinstance(layer, Convolutional):
                    bn = layer.batch_normalize
                    conv = L.Convolution2D(layer.in_channels, layer.filters, layer.size, layer.stride,
                                           layer.pad, nobias=bn, initialW=p["weights"],
                                           initial_bias=None if bn else p["biases"])
                    setattr(self, f"conv{index}", conv)
                    if bn:
                        norm = self.norm_link(layer.filters)
                        norm.scale.array[...] = p["scales"]
                        norm.bias.array[...] = p["biases"]
                        norm.mean[...] = p["rolling_mean"]
                        norm.variance[...] = p["rolling_variance"]
                        setattr(self, f"norm{index}", norm)
                elif isinstance(layer, Connected):
                    setattr(self, f"fc{index}", L.Linear(layer.inputs, layer.outputs,
                                                         initialW=p["weights"], initial_bias=p["biases"]))

    def forward(self, x):
        for index in range(len(self.spec.layers)):
            x = self.layer_forward(index, x)
        return x

    def layer_forward(self, index: int, x):
        layer = self.spec.layers[index]
        if isinstance(layer, Crop):
            return x * 2 - 1
        if isinstance(layer, Convolutional):
            x = getattr(self, f"conv{index}")(x)
            if layer.batch_normalize:
                x = getattr(self, f"norm{index}")(x)
            return _activate(x, layer.activation)
        if isinstance(layer, MaxPool):
            return F.max_pooling_2d(x, layer.size, layer.stride, cover_all=False)
        if isinstance(layer, Connected):
            return _activate(getattr(self, f"fc{index}")(x), layer.activation)
        return x  # dropout is the identity at test time; the detection layer only interprets its input
