"""The one place that makes Chainer 7.8.1 importable on NumPy 2.

Chainer 7.8.1 (the last release) still reads NumPy attributes that NumPy 2 removed. Importing this
module restores exactly those, as NumPy 1.x defined them, and nothing else; every module that
imports chainer imports this module first.
"""
from __future__ import annotations

import numpy as np

if not hasattr(np, "sctypes"):  # removed in NumPy 2.0; chainer's type checks iterate over it
    np.sctypes = {
        "int": [np.int8, np.int16, np.int32, np.int64],
        "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
        "float": [np.float16, np.float32, np.float64, np.longdouble],
        "complex": [np.complex64, np.complex128, np.clongdouble],
        "others": [bool, object, bytes, str, np.void],
    }
