"""Parameter updates: SGD exactly as Darknet applies momentum and decay, and Adam.

Both take the gradient of the batch-mean loss. Darknet accumulates `update = -sum over the batch of
the gradient - decay * batch * weight`, adds `learning_rate / batch * update` to the parameter, then
multiplies `update` by momentum. Dividing its state by the batch gives the form used here, with the
learning rate applied at update time (so a schedule changes steps, not the stored velocity).

On the CPU both update in pieces of CHUNK_ELEMENTS values, with two preallocated scratch pieces: a
connected layer holds tens of millions of parameters (yolov1-tiny: 18.4M, 74 MB), so an update
written as whole-array expressions streams each array through memory once per operation and
allocates a temporary for each; piece by piece the arrays are read and written about once, the
other operations hit the cache, and nothing is allocated. The arithmetic is the same, operation for
operation (measured: docs/measurements/training.md).
"""
from __future__ import annotations

import numpy as np

CHUNK_ELEMENTS = 1 << 17  # 512 KiB of float32; Adam on 18.4M values, 1 thread: 2^14 46 ms, 2^17 37 ms (fewer calls)


class _Pieces:
    """Matching flat pieces of same-shaped arrays, each with two scratch pieces of its length. On
    a GPU one piece is the whole array (its kernels stream anyway)."""

    def __init__(self, parameters: list):
        xp = parameters[0][0].xp
        largest = max(param.array.size for param, _ in parameters)
        self.length = min(CHUNK_ELEMENTS, largest) if xp is np else largest
        self.scratch = [xp.empty(self.length, np.float32) for _ in range(2)]

    def __call__(self, *arrays):
        flat = [array.reshape(-1) for array in arrays]
        size = flat[0].size
        for start in range(0, size, self.length):
            stop = min(start + self.length, size)
            yield [piece[start:stop] for piece in flat] + [scratch[:stop - start] for scratch in self.scratch]


def _in_place(param) -> tuple:
    """(parameter values, gradient) as arrays whose flat views write through to the parameter."""
    if not param.array.flags.c_contiguous:
        raise ValueError(f"parameter {param.name} is not contiguous")  # Chainer allocates them contiguous
    return param.array, param.xp.ascontiguousarray(param.grad)


class DarknetSGD:
    def __init__(self, parameters: list, momentum: float, decay: float):
        self.parameters = parameters  # (chainer.Parameter, is_weight)
        self.momentum, self.decay = momentum, decay
        self.velocity = [param.xp.zeros_like(param.array) for param, _ in parameters]
        self.pieces = _Pieces(parameters)

    def update(self, learning_rate: float) -> None:
        for (param, is_weight), velocity in zip(self.parameters, self.velocity):
            values, grad = _in_place(param)
            for value, g, v, scratch, _ in self.pieces(values, grad, velocity):
                v -= g
                if is_weight and self.decay:
                    v -= param.xp.multiply(value, self.decay, out=scratch)
                value += param.xp.multiply(v, learning_rate, out=scratch)
                v *= self.momentum


class Adam:
    """Adam (Kingma & Ba) with bias correction; `decay` adds an L2 term to weights' gradients."""

    def __init__(self, parameters: list, decay: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.parameters = parameters
        self.decay, self.beta1, self.beta2, self.eps = decay, beta1, beta2, eps
        self.first = [param.xp.zeros_like(param.array) for param, _ in parameters]
        self.second = [param.xp.zeros_like(param.array) for param, _ in parameters]
        self.steps = 0
        self.pieces = _Pieces(parameters)

    def update(self, learning_rate: float) -> None:
        self.steps += 1
        # Bias corrections folded into the step size (Kingma & Ba, section 2).
        correction = (1 - self.beta2 ** self.steps) ** 0.5
        step_size = learning_rate * correction / (1 - self.beta1 ** self.steps)
        eps = self.eps * correction  # the same as eps added to sqrt of the corrected second moment
        for (param, is_weight), first, second in zip(self.parameters, self.first, self.second):
            xp = param.xp
            values, grad = _in_place(param)
            decayed = is_weight and self.decay
            for value, g, m, v, gradient, work in self.pieces(values, grad, first, second):
                if decayed:
                    xp.multiply(value, self.decay, out=gradient)
                    gradient += g
                else:
                    gradient = g
                m *= self.beta1
                m += xp.multiply(gradient, 1 - self.beta1, out=work)
                v *= self.beta2
                xp.multiply(gradient, 1 - self.beta2, out=work)
                work *= gradient
                v += work
                xp.sqrt(v, out=work)
                work += eps
                xp.divide(m, work, out=work)
                work *= step_size
                value -= work
