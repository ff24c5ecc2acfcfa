"""Parameter updates: SGD exactly as Darknet applies momentum and decay, and Adam.

Both take the gradient of the batch-mean loss. Darknet accumulates `update = -sum over the batch of
the gradient - decay * batch * weight`, adds `learning_rate / batch * update` to the parameter, then
multiplies `update` by momentum. Dividing its state by the batch gives the form used here, with the
learning rate applied at update time (so a schedule changes steps, not the stored velocity).
"""
from __future__ import annotations


class DarknetSGD:
    def __init__(self, parameters: list, momentum: float, decay: float):
        self.parameters = parameters  # (chainer.Parameter, is_weight)
        self.momentum, self.decay = momentum, decay
        self.velocity = [param.xp.zeros_like(param.array) for param, _ in parameters]

    def update(self, learning_rate: float) -> None:
        for (param, is_weight), velocity in zip(self.parameters, self.velocity):
            velocity -= param.grad
            if is_weight and self.decay:
                velocity -= self.decay * param.array
            param.array += learning_rate * velocity
            velocity *= self.momentum


class Adam:
    """Adam (Kingma & Ba) with bias correction; `decay` adds an L2 term to weights' gradients."""

    def __init__(self, parameters: list, decay: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.parameters = parameters
        self.decay, self.beta1, self.beta2, self.eps = decay, beta1, beta2, eps
        self.first = [param.xp.zeros_like(param.array) for param, _ in parameters]
        self.second = [param.xp.zeros_like(param.array) for param, _ in parameters]
        self.steps = 0

    def update(self, learning_rate: float) -> None:
        self.steps += 1
        # Bias corrections folded into the step size (Kingma & Ba, section 2) and updates in place:
        # the connected layer holds most parameters, and temporaries cost more than arithmetic.
        correction = (1 - self.beta2 ** self.steps) ** 0.5
        step_size = learning_rate * correction / (1 - self.beta1 ** self.steps)
        for (param, is_weight), first, second in zip(self.parameters, self.first, self.second):
            grad = param.grad + self.decay * param.array if is_weight and self.decay else param.grad
            first *= self.beta1
            first += (1 - self.beta1) * grad
            second *= self.beta2
            second += (1 - self.beta2) * grad * grad
            denominator = param.xp.sqrt(second)
            denominator += self.eps * correction  # the same as eps added to sqrt of the corrected second moment
            step = first / denominator
            step *= step_size
            param.array -= step
