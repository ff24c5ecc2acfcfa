"""Chainer 7.8.1 on this NumPy (2.x: through detector/model/chainer_compat.py): the paths the
project uses compute what they should, in float32. The engine's parity with onnxruntime is in
test_model_parity.py."""
import ast
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from detector.model import chainer_compat  # noqa: F401  (before chainer)
import chainer
import chainer.functions as F
import chainer.gradient_check
import chainer.links as L


def _imports(tree):
    """(line, enclosing function or None, imported module name) for every import in a module."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child)
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, function, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                # `from ..model import chainer_compat` imports a module too: record the module and
                # each name as a possible submodule
                base = "." * child.level + (child.module or "")
                found.extend((child.lineno, function, name) for alias in child.names
                             for name in ({base, f"{base.rstrip('.')}.{alias.name}"} if child.module else {base + alias.name}))
            visit(child, function)

    visit(tree, None)
    return found


def test_every_chainer_import_comes_after_chainer_compat():
    """Importing chainer first would fail on NumPy 2 (np.sctypes at import time)."""
    checked = 0
    for path in sorted((ROOT / "detector").rglob("*.py")):
        if path.name == "chainer_compat.py":
            continue
        imports = _imports(ast.parse(path.read_text()))
        for line, function, name in imports:
            if name == "chainer" or name.startswith("chainer."):
                checked += 1
                assert any(other < line and where in (None, function) and other_name.endswith("chainer_compat")
                           for other, where, other_name in imports), \
                    f"{path.relative_to(ROOT)}:{line} imports chainer before detector.model.chainer_compat"
    assert checked >= 2  # chainer_net.py and the engine at least


def test_importing_chainer_leaves_logging_and_numpy_alone():
    """numpy.distutils, where it still exists, set the root logger to WARNING when chainer imported
    it (the daemon's log went silent); the compatibility layer keeps it from loading at all."""
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO)\n"
            "from detector.model import chainer_compat\n"
            "import chainer, chainer.functions\n"
            "assert logging.getLogger().level == logging.INFO, logging.getLogger().level\n"
            "assert 'distutils' not in sys.modules and 'numpy.distutils.ccompiler' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_as_strided_backward_reads_the_restored_sctypes():
    # chainer's as_strided checks the gradient's dtype against np.sctypes["float"] in backward
    x = chainer.Variable(np.arange(6, dtype=np.float32))
    y = F.as_strided(x, shape=(5, 2), strides=(1, 1))  # in items; overlapping windows [0, 1], [1, 2] ... [4, 5]
    F.sum(y * y).backward()
    np.testing.assert_array_equal(y.array, [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    np.testing.assert_array_equal(x.grad, 2 * np.arange(6) * [1, 2, 2, 2, 2, 1])  # each use counts
    assert x.grad.dtype == np.float32


def test_backward_through_the_layers_matches_numerical_gradients():
    """Convolution, batch norm with batch statistics, leaky ReLU, max pooling, linear: the layer
    kinds of the detector and its training."""
    rng = np.random.default_rng(0)
    conv = L.Convolution2D(3, 4, 3, 1, 1, nobias=True, initialW=rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    norm = L.BatchNormalization(4)
    fc = L.Linear(4 * 4 * 4, 5, initialW=rng.standard_normal((5, 64)).astype(np.float32) * 0.1)

    def network(x):
        h = F.batch_normalization(conv(x), norm.gamma, norm.beta)
        return fc(F.max_pooling_2d(F.leaky_relu(h, slope=0.1), 2, 2))

    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    gy = rng.standard_normal((2, 5)).astype(np.float32)
    chainer.gradient_check.check_backward(network, x, gy, params=[conv.W, norm.gamma, norm.beta, fc.W, fc.b],
                                          eps=1e-3, atol=1e-3, rtol=1e-3, dtype=np.float64)


def test_dropout_scales_what_it_keeps():
    x = chainer.Variable(np.full((1000,), 3.0, np.float32))
    with chainer.using_config("train", True):
        y = F.dropout(x, 0.25)
    F.sum(y).backward()
    kept = y.array != 0
    assert 0.6 < kept.mean() < 0.9
    np.testing.assert_allclose(y.array[kept], 4.0)
    np.testing.assert_allclose(x.grad, kept / 0.75, rtol=1e-6)
    assert y.array.dtype == x.grad.dtype == np.float32


def test_batch_norm_training_normalises_and_updates_running_averages():
    rng = np.random.default_rng(1)
    norm = L.BatchNormalization(3, decay=0.9, eps=1e-5)
    x = (rng.standard_normal((4, 3, 5, 5)) * 3 + 2).astype(np.float32)
    with chainer.using_config("train", True):
        y = norm(x).array
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    expected = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert y.dtype == np.float32
    np.testing.assert_allclose(norm.avg_mean, 0.1 * mean, rtol=1e-5)
    m = x.size // 3
    np.testing.assert_allclose(norm.avg_var, 0.9 + 0.1 * var * m / (m - 1), rtol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_optimizer_step_with_weight_decay(name):
    """One step of chainer's own optimizers equals its closed form, and parameters stay float32
    (NumPy 2's promotion rules would turn float32 + float64 scalars into float64 if chainer mixed them)."""
    rng = np.random.default_rng(2)
    link = L.Linear(4, 3, initialW=rng.standard_normal((3, 4)).astype(np.float32))
    w0 = link.W.array.copy()
    optimizer = {"sgd": chainer.optimizers.SGD(lr=0.1),
                 "momentum": chainer.optimizers.MomentumSGD(lr=0.1, momentum=0.9),
                 "adam": chainer.optimizers.Adam(alpha=0.01)}[name]
    optimizer.setup(link)
    optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(0.01))
    x = rng.standard_normal((2, 4)).astype(np.float32)
    link.cleargrads()
    F.sum(link(x) ** 2).backward()
    grad = link.W.grad.astype(np.float64) + 0.01 * w0
    optimizer.update()
    if name == "adam":  # first step: m / sqrt(v) = g / |g|, bias-corrected
        expected = w0 - 0.01 * grad / (np.abs(grad) + 1e-8)
    else:  # SGD, and momentum's first step (zero velocity)
        expected = w0 - 0.1 * grad
    np.testing.assert_allclose(link.W.array, expected, rtol=1e-5, atol=1e-6)
    assert link.W.array.dtype == np.float32 and link.b.array.dtype == np.float32
