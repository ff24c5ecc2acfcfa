"""Whether a model's parameters are all finite numbers.

A NaN or infinite parameter (a damaged file, a training run that diverged) makes the network's
answers meaningless while every layer still "works": it must stop a model at load time, not show up
later as boxes with NaN coordinates.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .network import Model

CHUNK_VALUES = 1 << 16  # read a mapped file 256 KB at a time: its buffer counts in peak RSS


def count_nonfinite(model: Model) -> int:
    """How many of the model's parameters are NaN or infinite. A Darknet file is read in chunks
    with plain reads, not through its memory map: its pages then stay out of this process's RSS until
    an engine needs them."""
    if model.mapped_file is None:
        return sum(int(array.size - np.count_nonzero(np.isfinite(array)))
                   for layer in model.params for array in layer.values())
    mapped = model.mapped_file
    count, left = 0, mapped.values.size
    buffer = np.empty(CHUNK_VALUES, "<f4")
    with open(mapped.path, "rb") as f:
        f.seek(mapped.offset)
        while left:
            chunk = buffer[:min(left, CHUNK_VALUES)]
            f.readinto(memoryview(chunk).cast("B"))
            count += int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
            left -= chunk.size
    return count


def refuse_nonfinite(model: Model) -> Model:
    """`model`, or a UserError saying how many of its parameters are not finite (`run` exits 78 on it,
    as on any model that cannot be used)."""
    count = count_nonfinite(model)
    if count:
        raise UserError(f"{model.source}: {count:,} of {model.spec.parameter_count:,} parameters are not finite "
                        "(NaN or infinite), so every detection would be meaningless; the file is damaged or "
                        "comes from a training run that diverged: fetch it again (`robot-detector weights "
                        "fetch`) or use another checkpoint")
    return model
