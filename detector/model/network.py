"""A network description with its parameters: what every engine is built from.

Parameters are kept exactly as Darknet holds them (connected matrices [out][in], batch-norm
statistics unfolded); each engine converts them once when it is created. Parameters read from a
Darknet file are read-only views of that file mapped into memory, so loading copies nothing and
an engine that can read the file itself (onnxruntime) never makes Python hold a second copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cfg import Connected, Convolutional, NetworkSpec

DARKNET_BN_EPSILON = 1e-6  # added after the square root of the variance, as Darknet does


@dataclass(frozen=True)
class MappedFile:
    """A weights file mapped read-only: `values` are its float32 parameters from byte `offset` on."""
    path: Path
    values: np.ndarray
    offset: int

    def file_offset(self, array: np.ndarray) -> int | None:
        """Byte offset in the file of `array` when it is a C-contiguous float32 view into it."""
        if array.dtype != np.float32 or not array.flags.c_contiguous:
            return None
        start = array.__array_interface__["data"][0] - self.values.__array_interface__["data"][0]
        if not 0 <= start <= self.values.nbytes - array.nbytes:
            return None
        return self.offset + start


@dataclass(frozen=True)
class Model:
    spec: NetworkSpec
    params: tuple  # one dict per layer: parameter name -> float32 array ({} for layers without any)
    source: str    # the file the parameters came from, or a description of how they were made
    mapped_file: MappedFile | None = None  # set when `params` are views of a Darknet weights file

    @property
    def name(self) -> str:
        return self.spec.name


def random_model(spec: NetworkSpec, seed: int = 0) -> Model:
    """Random parameters scaled so that activations stay near unit size through every layer.

    Speed does not depend on the values, so benchmarks and tests use these where no trained
    weights exist.
    """
    rng = np.random.default_rng(seed)
    params = []
    for index, layer in enumerate(spec.layers):
        layer_params = {}
        for name, shape in spec.parameter_shapes(index):
            if name == "weights":
                fan_in = int(np.prod(shape[1:]))
                values = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            elif name == "rolling_variance":
                values = rng.uniform(0.5, 2.0, shape)
            elif name == "scales":
                values = rng.uniform(0.5, 1.5, shape)
            else:  # biases, rolling_mean
                values = rng.normal(0.0, 0.1, shape)
            layer_params[name] = values.astype(np.float32)
        params.append(layer_params)
    return Model(spec, tuple(params), f"random parameters (seed {seed})")


def parametrised_layers(spec: NetworkSpec):
    """Indices of the layers that carry parameters, in file order."""
    return [i for i, layer in enumerate(spec.layers) if isinstance(layer, (Convolutional, Connected))]


def planted_model(spec: NetworkSpec, persons, seed: int = 0, confidence: float = 0.9) -> Model:
    """Random trunk, but a last layer with zero weights whose biases encode `persons`.

    Whatever the image, the network then reports each (x, y, w, h) box (normalised centre and
    size) as a person with probability `confidence`; the second box slot of each planted cell
    repeats the box slightly shifted at a lower score, so NMS has real work to do. This is how the
    demo, the benchmark and the tests get a detector whose answer is known without trained weights.
    """
    base = random_model(spec, seed)
    detection = spec.detection
    side, num, classes = detection.side, detection.num, detection.classes
    cells = side * side
    biases = np.zeros(spec.outputs, np.float32)
    for x, y, w, h in persons:
        col, row = min(int(x * side), side - 1), min(int(y * side), side - 1)
        cell = row * side + col
        biases[cell * classes + 14] = 1.0  # VOC class 14: person
        for n in range(num):
            shift = 0.02 * n
            biases[cells * classes + cell * num + n] = confidence * (1.0 - 0.1 * n)
            box = cells * (classes + num) + (cell * num + n) * 4
            biases[box:box + 4] = (x * side - col + shift, y * side - row, np.sqrt(w), np.sqrt(h))
    last = parametrised_layers(spec)[-1]
    params = list(base.params)
    params[last] = {**params[last], "biases": biases, "weights": np.zeros_like(params[last]["weights"])}
    return Model(spec, tuple(params), f"planted persons {list(persons)} (seed {seed})")
