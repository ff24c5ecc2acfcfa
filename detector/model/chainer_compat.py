"""The one place that makes Chainer 7.8.1 work on NumPy 2.

Chainer 7.8.1 (the last release) still reaches for two things NumPy 2 no longer has (np.sctypes,
and numpy.distutils on Python 3.12+). Importing this module provides exactly those (and quiets one
setuptools warning, below); every module that imports chainer imports this module first.

What was needed was found by running the Chainer paths this project uses on NumPy 2 (inference;
backward through convolution, linear, batch norm in training mode, pooling, dropout; Chainer's
SGD, MomentumSGD and Adam with weight decay; npz save/load): with these two restored, every
result was bit-identical to NumPy 1.26's and stayed float32 (tests/test_chainer_compat.py).
"""
from __future__ import annotations

import sys
import types
import warnings

import numpy as np

if not hasattr(np, "sctypes"):
    # Removed in NumPy 2.0. chainer.functions.array.as_strided reads it at import time (so every
    # `import chainer` needs it) and in its backward pass. The lists NumPy 1.x defined:
    np.sctypes = {
        "int": [np.int8, np.int16, np.int32, np.int64],
        "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
        "float": [np.float16, np.float32, np.float64, np.longdouble],
        "complex": [np.complex64, np.complex128, np.clongdouble],
        "others": [bool, object, bytes, str, np.void],
    }

if "numpy.distutils" not in sys.modules:
    # Chainer imports numpy.distutils.system_info at import time only to ask, on macOS, whether
    # NumPy uses Apple's Accelerate BLAS (to warn about it). NumPy 2 has no numpy.distutils on
    # Python 3.12+; where it still exists, importing it loads the whole build machinery and (with
    # setuptools 80, measured) sets the root logger to WARNING, which silenced the daemon's log.
    # An empty answer is what system_info gives when it finds no BLAS: no warning, nothing loaded.
    system_info = types.ModuleType("numpy.distutils.system_info")
    system_info.get_info = lambda name, notfound_action=0: {}
    distutils = types.ModuleType("numpy.distutils")
    distutils.system_info = system_info
    sys.modules["numpy.distutils"] = distutils
    sys.modules["numpy.distutils.system_info"] = system_info

# Not NumPy, but the same age gap: chainer imports pkg_resources at import time, and setuptools
# (pinned below 81, which removed it) warns about that on every import. The pin is the answer; the
# warning would only repeat it in every log.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning,
                        module="chainer._environment_check")
