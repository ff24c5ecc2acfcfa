"""The inference network made trainable: batch statistics in batch norm, dropout, frozen layers,
Darknet's random initialisation, and the parameters read back into a Model for saving."""
from __future__ import annotations

from ..model import chainer_compat  # noqa: F401  (before chainer)
import chainer
import chainer.functions as F
import numpy as np

from ..model.cfg import Connected, Convolutional, Dropout, NetworkSpec
from ..model.chainer_net import DarknetBatchNorm, TinyYoloV1
from ..model.network import Model

TRAIN_BN_EPSILON = 1e-5   # inside the square root, as frameworks do (docs/design/darknet-v1.md, "Training")
ROLLING_MOMENTUM = 0.99   # Darknet: rolling = 0.99 * rolling + 0.01 * batch statistic


class TrainableBatchNorm(DarknetBatchNorm):
    """Training: normalise with the batch's mean and variance and update Darknet's rolling mean and
    (unbiased) variance; evaluation: Darknet's test-time formula from the rolling values."""

    def forward(self, x):
        if not chainer.config.train:
            return super().forward(x)
        # Chainer updates the rolling values in place with the unbiased variance, as Darknet does
        return F.batch_normalization(x, self.scale, self.bias, eps=TRAIN_BN_EPSILON, running_mean=self.mean,
                                     running_var=self.variance, decay=ROLLING_MOMENTUM)


FROZEN_ENGINES = ("onnxruntime", "chainer")


class TrainableNet(TinyYoloV1):
    """`frozen` first layers run without autograd and in test mode (their batch norm uses and
    keeps the rolling statistics), so fine-tuning the head never recomputes their gradients.

    frozen_engine: what computes those layers. "onnxruntime" (CPU only: the trainer picks
    "chainer" on a GPU) runs them as the inference engine's graph, built once from `model`: they
    never change, and that forward pass is several times faster than Chainer's on NumPy
    (docs/measurements/training.md). Their Chainer links stay, unused, so that `to_model` saves
    every layer."""

    norm_link = TrainableBatchNorm

    def __init__(self, model: Model, frozen: int = 0, frozen_engine: str = "chainer"):
        super().__init__(model)
        if frozen_engine not in FROZEN_ENGINES:
            raise ValueError(f"frozen_engine must be one of {FROZEN_ENGINES}, found {frozen_engine!r}")
        self.frozen = frozen
        self.frozen_engine = frozen_engine
        self._frozen_session = None
        if frozen and frozen_engine == "onnxruntime":
            from ..model.engines import onnxruntime_fp32_session
            self._frozen_session = onnxruntime_fp32_session(model, layers=frozen)

    def frozen_features(self, x) -> np.ndarray:
        """The frozen layers' output for input `x` (an array on this net's device)."""
        if isinstance(x, chainer.Variable):
            x = x.array
        if self._frozen_session is not None:
            from ..model.onnx_graph import INPUT_NAME
            return self.xp.asarray(self._frozen_session.run(None, {INPUT_NAME: np.asarray(x, np.float32)})[0])
        with chainer.no_backprop_mode(), chainer.using_config("train", False):
            for index in range(self.frozen):
                x = self.layer_forward(index, x)
        return x.array if isinstance(x, chainer.Variable) else x

    def layer_forward(self, index: int, x):
        layer = self.spec.layers[index]
        if isinstance(layer, Dropout) and chainer.config.train:
            return F.dropout(x, layer.probability)
        return super().layer_forward(index, x)

    @property
    def ahead(self):
        """What the trainer may run on a thread of its own, a batch ahead of the step, or None: the
        frozen layers when onnxruntime runs them (a session any thread may call). `step_forward`
        takes its output."""
        return self.frozen_features if self._frozen_session is not None else None

    def step_forward(self, inputs):
        """The training step's forward pass, from the network's input or, where `ahead` ran, from its output."""
        return self._forward_trained(inputs) if self._frozen_session is not None else self(inputs)

    def forward(self, x):
        return self._forward_trained(self.frozen_features(x) if self.frozen else x)

    def _forward_trained(self, features):
        x = chainer.Variable(features, requires_grad=False) if self.frozen else features
        for index in range(self.frozen, len(self.spec.layers)):
            x = self.layer_forward(index, x)
        return x

    def trainable_parameters(self) -> list:
        """(parameter, is_weight) of the layers after the frozen ones; Darknet decays weights only."""
        found = []
        for index in range(self.frozen, len(self.spec.layers)):
            layer = self.spec.layers[index]
            if isinstance(layer, Convolutional):
                conv = getattr(self, f"conv{index}")
                found.append((conv.W, True))
                if layer.batch_normalize:
                    norm = getattr(self, f"norm{index}")
                    found += [(norm.scale, False), (norm.bias, False)]
                else:
                    found.append((conv.b, False))
            elif isinstance(layer, Connected):
                fc = getattr(self, f"fc{index}")
                found += [(fc.W, True), (fc.b, False)]
        return found

    def to_model(self, source: str) -> Model:
        """The current parameters on the host, in Darknet's layout."""
        host = chainer.backend.CpuDevice()
        params = []
        for index, layer in enumerate(self.spec.layers):
            p = {}
            if isinstance(layer, Convolutional):
                conv = getattr(self, f"conv{index}")
                p["weights"] = host.send(conv.W.array)
                if layer.batch_normalize:
                    norm = getattr(self, f"norm{index}")
                    p.update(biases=host.send(norm.bias.array), scales=host.send(norm.scale.array),
                             rolling_mean=host.send(norm.mean), rolling_variance=host.send(norm.variance))
                else:
                    p["biases"] = host.send(conv.b.array)
            elif isinstance(layer, Connected):
                fc = getattr(self, f"fc{index}")
                p = {"weights": host.send(fc.W.array), "biases": host.send(fc.b.array)}
            params.append({name: np.array(value, np.float32) for name, value in p.items()})
        return Model(self.spec, tuple(params), source)


def darknet_random_model(spec: NetworkSpec, seed: int) -> Model:
    """Darknet's initialisation: convolution weights sqrt(2 / (size*size*c)) * N(0, 1), connected
    weights sqrt(2 / inputs) * U(-1, 1), biases 0, batch-norm scales 1. Rolling statistics start
    at mean 0, variance 1 (Darknet leaves the variance 0, which only training overwrites)."""
    rng = np.random.default_rng(seed)
    params = []
    for index, layer in enumerate(spec.layers):
        p = {}
        if isinstance(layer, Convolutional):
            n, fan_in = layer.filters, layer.size * layer.size * layer.in_channels
            p["biases"] = np.zeros(n, np.float32)
            if layer.batch_normalize:
                p.update(scales=np.ones(n, np.float32), rolling_mean=np.zeros(n, np.float32),
                         rolling_variance=np.ones(n, np.float32))
            p["weights"] = (np.sqrt(2.0 / fan_in) * rng.standard_normal(
                (n, layer.in_channels, layer.size, layer.size))).astype(np.float32)
        elif isinstance(layer, Connected):
            p["biases"] = np.zeros(layer.outputs, np.float32)
            p["weights"] = (np.sqrt(2.0 / layer.inputs) * rng.uniform(-1, 1, (layer.outputs, layer.inputs))).astype(np.float32)
        params.append(p)
    return Model(spec, tuple(params), f"Darknet random initialisation (seed {seed})")
