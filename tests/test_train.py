"""`robot-detector train`: Darknet's update rule, frozen layers, cumulative `seen`, checkpoints on
SIGTERM, cfg training options, and clear errors."""
import json
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from darknet_files import _conv3x3, make_params, write_weights
from detector.model.cfg import CFG_DIR, parse_cfg
from detector.model.decode import VOC_CLASSES
from detector.model.weights_store import load_model
from detector.train import shapes
from detector.train.trainer import TrainOptions, train
from test_train_objective import darknet_delta
from train_helpers import small_cfg

HEADER = 20


def write_shapes(root, count, size, class_names=shapes.CLASSES, class_map=None, seed=5):
    """Generated shapes, written at the network's input size (so that --augment none changes nothing)."""
    shapes.write_dataset(root, count, seed=seed, width=size, height=size)
    (root / "classes.txt").write_text("\n".join(class_names) + "\n")
    if class_map:
        for label in (root / "labels").glob("*.txt"):
            lines = [line.split() for line in label.read_text().splitlines()]
            label.write_text("".join(f"{class_map[int(c)]} {' '.join(rest)}\n" for c, *rest in lines))
    return root


def small_params(spec, seed):
    """(kind, params) per parametrised layer, for darknet_files.write_weights."""
    rng = np.random.default_rng(seed)
    layers = []
    for index, layer in enumerate(spec.layers):
        shapes_ = dict(spec.parameter_shapes(index))
        if not shapes_:
            continue
        w = shapes_["weights"]
        layers.append(("conv" if len(w) == 4 else "fc", {
            "biases": rng.normal(0, 0.1, shapes_["biases"]).astype(np.float32),
            "weights": (rng.standard_normal(w) * np.sqrt(2.0 / np.prod(w[1:]))).astype(np.float32)}))
    return layers


def numpy_forward_small(layers, image_rgb01):
    """Forward pass of train_helpers.small_cfg without batch norm: returns (last layer input, output)."""
    x = image_rgb01.astype(np.float64)
    for kind, p in layers[:-1]:
        x = _conv3x3(x, p["weights"].astype(np.float64), p["biases"].astype(np.float64))
        x = np.where(x > 0, x, 0.1 * x)
        c, h, w = x.shape
        x = x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))
    x = x.reshape(-1)
    last = layers[-1][1]
    return x, last["weights"].astype(np.float64) @ x + last["biases"]


def read_values(path):
    data = path.read_bytes()
    return data[:HEADER], np.frombuffer(data[HEADER:], "<f4")


def test_one_plain_sgd_step_is_darknets_update(tmp_path):
    """w += lr/batch * sum over the batch of Darknet's delta-derived updates, checked on the last
    layer against a NumPy forward pass and the delta transcription of test_train_objective."""
    size, batch, lr = 28, 4, 0.05
    cfg_text = small_cfg(size=size, side=7, num=2, classes=3, filters=(4, 8))
    cfg = tmp_path / "small.cfg"
    cfg.write_text(cfg_text)
    spec = parse_cfg(cfg_text)
    data = write_shapes(tmp_path / "data", batch, size)
    layers = small_params(spec, seed=1)
    init = tmp_path / "init.weights"
    write_weights(init, layers, header="modern")
    out = tmp_path / "out.weights"
    result = run_cli("train", data, "--cfg", cfg, "--weights", init, "--out", out, "--iterations", 1,
                     "--batch", batch, "--optimizer", "sgd", "--lr", lr, "--momentum", 0, "--decay", 0,
                     "--augment", "none", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"done": True, "out": str(out), "seen": 32013312 + batch,
                                                          "iterations": 1}

    from detector.train.dataset import load_dataset
    dataset = load_dataset(data)
    inputs, outputs = [], []
    for sample in dataset:  # every image exactly once in the first pass
        rgb01 = sample.image_bgr[..., ::-1].transpose(2, 0, 1) / 255.0
        x, y = numpy_forward_small(layers, rgb01)
        inputs.append(x)
        outputs.append(y)
    delta = darknet_delta(np.array(outputs), list(dataset.labels), 7, 2, 3, (1, 0.5, 1, 5))
    expected_w = layers[-1][1]["weights"] + lr / batch * (delta.T @ np.array(inputs))
    expected_b = layers[-1][1]["biases"] + lr / batch * delta.sum(axis=0)

    header, values = read_values(out)
    assert struct.unpack("<3iq", header) == (0, 2, 0, 32013312 + batch)
    n_w, n_b = expected_w.size, expected_b.size
    new_b, new_w = values[-n_w - n_b:-n_w], values[-n_w:].reshape(expected_w.shape)
    old_w, old_b = layers[-1][1]["weights"], layers[-1][1]["biases"]
    # Compare the updates (not the weights, whose float32 rounding would hide them).
    np.testing.assert_allclose(new_w - old_w, expected_w - old_w, rtol=2e-3, atol=2e-7)
    np.testing.assert_allclose(new_b - old_b, expected_b - old_b, rtol=2e-3, atol=2e-7)
    assert np.abs(expected_b - old_b).max() > 1e-4  # the step is large enough to mean something
    assert not np.array_equal(values[:4], layers[0][1]["biases"])  # the first layer trains too


def test_leaky_activation_is_darknets_value_and_gradient():
    """Darknet: y = x if x > 0 else 0.1 x, gradient 1 if x > 0 else 0.1 (x = 0 included)."""
    from detector.model.chainer_net import DarknetLeaky  # before chainer: its NumPy 2 shims
    import chainer
    from chainer import gradient_check
    x = chainer.Variable(np.array([-3.0, -0.5, 0.0, 0.25, 2.0], np.float32))
    y = DarknetLeaky().apply((x,))[0]
    y.grad = np.array([1, 2, 3, 4, 5], np.float32)
    y.backward()
    tenth = np.float32(0.1)  # exact float32 arithmetic, as Darknet's C does
    assert y.array.tolist() == [-3 * tenth, -0.5 * tenth, 0.0, 0.25, 2.0]
    assert x.grad.tolist() == [tenth, 2 * tenth, 3 * tenth, 4.0, 5.0]
    # away from the kink, the backward pass agrees with numerical differentiation
    data = np.random.default_rng(0).uniform(0.1, 1, (3, 4)).astype(np.float32)
    data *= np.where(np.random.default_rng(1).random((3, 4)) < 0.5, -1, 1).astype(np.float32)
    gradient_check.check_backward(lambda v: DarknetLeaky().apply((v,))[0], data,
                                 np.ones((3, 4), np.float32), eps=1e-3, atol=1e-3, rtol=1e-3)


def test_freeze_changes_only_later_layers_and_seen_adds_up(tmp_path):
    """Fine-tuning a generated yolov1-tiny file: frozen layers keep every byte (batch-norm
    statistics included), the others all change, and `seen` accumulates across runs."""
    data = write_shapes(tmp_path / "data", 2, 448, class_names=VOC_CLASSES, class_map={0: 14, 1: 4, 2: 16})
    init = tmp_path / "yolov1-tiny.weights"
    write_weights(init, make_params("yolov1-tiny", seed=2), header="modern64")
    cfg = CFG_DIR / "yolov1-tiny.cfg"
    first, second = tmp_path / "first.weights", tmp_path / "second.weights"
    common = dict(cfg=str(cfg), iterations=1, batch=1, augment="none")
    train(TrainOptions(str(data), out=str(first), weights=str(init), freeze=14, **common))
    result = run_cli("train", data, "--cfg", cfg, "--weights", first, "--out", second, "--iterations", 1,
                     "--batch", 1, "--freeze", 12, "--json", timeout=300)
    assert result.returncode == 0, result.stderr

    spec = load_model(init, cfg).spec
    offsets, position = {}, HEADER
    for index in range(len(spec.layers)):
        for name, shape in spec.parameter_shapes(index):
            offsets[(index, name)] = (position, position + 4 * int(np.prod(shape)))
            position += 4 * int(np.prod(shape))
    files = [p.read_bytes() for p in (init, first, second)]
    assert all(len(f) == position for f in files)
    seen = [struct.unpack("<q", f[12:20])[0] for f in files]
    assert seen[1] == seen[0] + 1 and seen[2] == seen[0] + 2
    for (index, name), (start, end) in offsets.items():
        unchanged = [files[0][start:end] == files[1][start:end], files[1][start:end] == files[2][start:end]]
        assert unchanged == [index < 14, index < 12], (index, name, unchanged)


def test_frozen_layers_on_onnxruntime_compute_what_chainer_computes(tmp_path):
    """--freeze runs the frozen layers on onnxruntime: their features equal Chainer's (yolov1-tiny,
    448x448, batch norm with non-trivial rolling statistics), and training from the same seed on the
    same data follows the same loss curve and ends in the same weights."""
    from detector.model.network import random_model
    from detector.model.preprocess import to_blob
    from detector.model.cfg import load_spec
    from detector.model.weight_formats import save_darknet
    from detector.train.trainable_net import TrainableNet
    model = random_model(load_spec("yolov1-tiny"), seed=3)
    images = np.random.default_rng(4).integers(0, 256, (2, 300, 400, 3), dtype=np.uint8)
    blob = np.concatenate([to_blob(image, 448, 448) for image in images])
    features = [TrainableNet(model, 14, engine).frozen_features(blob) for engine in ("onnxruntime", "chainer")]
    assert features[0].shape == features[1].shape == (2, 256, 7, 7)
    assert np.abs(features[1]).max() > 0.1  # real activations, not an empty map
    np.testing.assert_allclose(features[0], features[1], rtol=1e-4, atol=1e-4)

    cfg = tmp_path / "small.cfg"
    cfg.write_text(small_cfg(size=28, filters=(4, 8), batch_normalize=1))
    init = tmp_path / "init.weights"
    save_darknet(random_model(parse_cfg(cfg.read_text()), seed=5), init, 0)
    data = write_shapes(tmp_path / "data", 8, 28)
    results = [train(TrainOptions(str(data), cfg=str(cfg), weights=str(init), out=str(tmp_path / f"{engine}.weights"),
                                  iterations=6, batch=4, freeze=4, frozen_engine=engine, seed=2))
               for engine in ("onnxruntime", "chainer")]
    assert len(results[0].losses) == 6 and len(set(results[0].losses)) > 1  # it trains: the loss moves
    np.testing.assert_allclose(results[0].losses, results[1].losses, rtol=1e-4)
    np.testing.assert_allclose(read_values(results[0].out)[1], read_values(results[1].out)[1], rtol=1e-3, atol=1e-5)


def test_sigterm_leaves_a_loadable_checkpoint(tmp_path):
    cfg = tmp_path / "small.cfg"
    cfg.write_text(small_cfg(size=28, filters=(4, 8)))
    data = write_shapes(tmp_path / "data", 8, 28)
    out = tmp_path / "out.weights"
    process = subprocess.Popen([str(Path(sys.executable).parent / "robot-detector"), "train", str(data), "--cfg", str(cfg),
                                "--out", str(out), "--iterations", "100000", "--batch", "2", "--json", "--seed", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(process.stdout.readline())  # the 10th iteration is done
        assert first["iteration"] == 10 and np.isfinite(first["loss"])
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    last = json.loads(stdout.splitlines()[-1])
    assert last["done"] is False and last["interrupted"] == "SIGTERM" and last["iterations"] >= 10
    assert last["seen"] == 2 * last["iterations"]
    model = load_model(out, cfg)  # exact size checked by the loader
    assert struct.unpack("<q", out.read_bytes()[12:20])[0] == last["seen"]
    assert all(np.isfinite(v).all() for p in model.params for v in p.values())
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_bad_options_are_one_clear_error(tmp_path, capsys):
    from detector.cli import main
    data = write_shapes(tmp_path / "data", 2, 28)
    for classes, args, expected, exit_code in (
            (3, ["--freeze", "9"], "--freeze must be between 0 and 4 for cfg 'small'", 78),
            (2, [], "has 3 classes (person, box, ball) but cfg 'small' predicts 2", 78),
            (3, ["--device", "gpu:3"], "--device gpu:3 needs CuPy and a CUDA GPU", 1)):
        cfg = tmp_path / "small.cfg"
        cfg.write_text(small_cfg(size=28, classes=classes))
        code = main(["train", str(data), "--cfg", str(cfg), "--iterations", "1", "--out", str(tmp_path / "o"), *args])
        stderr = capsys.readouterr().err
        assert code == exit_code and expected in stderr and "Traceback" not in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cfg_training_options_and_learning_rate_policy():
    spec = parse_cfg(small_cfg(extra_net="policy=steps\nsteps=10,20\nscales=0.5,0.1\nburn_in=4\npower=2\n"
                                         "max_batches=30\nexposure=1.2\nhue=.05\n"))
    training, detection = spec.training, spec.detection
    assert (training.batch, training.learning_rate, training.momentum, training.decay) == (4, 0.01, 0.9, 0.0005)
    assert (training.exposure, training.saturation, training.hue, training.max_batches) == (1.2, 1.0, 0.05, 30)
    assert [training.learning_rate_at(i) for i in (0, 2, 4, 9, 10, 19, 20, 29)] == pytest.approx(
        [0.0, 0.01 * 0.25, 0.01, 0.01, 0.005, 0.005, 0.0005, 0.0005])
    assert training.learning_rate_at(10, base=1.0) == 0.5
    assert (detection.object_scale, detection.noobject_scale, detection.class_scale, detection.coord_scale,
            detection.rescore, detection.sqrt, detection.jitter) == (1, 0.5, 1, 5, True, True, 0.2)
    bare = parse_cfg("[net]\nwidth=28\nheight=28\n[connected]\noutput=294\nactivation=linear\n[detection]\nnum=1\n")
    assert bare.training.learning_rate == 0.001 and bare.training.policy == "constant"
    assert (bare.detection.sqrt, bare.detection.rescore, bare.detection.noobject_scale) == (False, False, 1.0)
    from detector.errors import UserError
    with pytest.raises(UserError, match="policy 'sgdr' is not supported"):
        parse_cfg(small_cfg(extra_net="policy=sgdr\n"))
    with pytest.raises(UserError, match="as many scales as steps"):
        parse_cfg(small_cfg(extra_net="policy=steps\nsteps=1,2\nscales=.1\n"))
    with pytest.raises(UserError, match="'momentum' must be a number"):
        parse_cfg(small_cfg(extra_net="momentum=fast\n"))


def test_decode_honours_the_cfg_sqrt_flag(tmp_path):
    """With sqrt=0 the network predicts w and h directly; the predictor must not square them."""
    from detector.model.engines import create_engine
    from detector.model.predictor import Predictor
    for sqrt, expected_w in ((0, 0.36), (1, 0.36 ** 2)):
        spec = parse_cfg(small_cfg(size=28, classes=1, sqrt=sqrt))
        model = load_model_with_planted_box(spec, (0.5, 0.5, 0.36, 0.5))
        prediction = Predictor(create_engine(model, "onnxruntime"), 0.2, 0.5).predict(np.zeros((28, 28, 3), np.uint8))
        assert len(prediction.detections) == 1
        assert prediction.detections[0].w == pytest.approx(expected_w, rel=1e-5)


def load_model_with_planted_box(spec, box):
    """Zero weights everywhere; the last layer's biases report `box` (raw values) in one cell."""
    from detector.model.network import Model
    params = []
    for index in range(len(spec.layers)):
        params.append({name: np.zeros(shape, np.float32) for name, shape in spec.parameter_shapes(index)})
    biases = params[-2]["biases"]
    cell, cells = 3 * 7 + 3, 49
    biases[cell] = 1.0                                   # class 0 score
    biases[cells + cell * 2] = 0.9                       # confidence of box 0
    biases[cells * 3 + cell * 8:cells * 3 + cell * 8 + 4] = (0.5, 0.5, box[2], box[3])
    return Model(spec, tuple(params), "planted")


def test_gpu_training_matches_cpu(tmp_path):
    """--device gpu computes what the CPU computes (parameters moved once, results saved from the host)."""
    pytest.importorskip("cupy", reason="CuPy is not installed (no GPU here)")
    cfg = tmp_path / "small.cfg"
    cfg.write_text(small_cfg(size=28, filters=(4, 8)))
    data = write_shapes(tmp_path / "data", 4, 28)
    outs = []
    for device in ("cpu", "gpu"):
        out = tmp_path / f"{device}.weights"
        train(TrainOptions(str(data), out=str(out), cfg=str(cfg), iterations=2, batch=4, augment="none",
                           device=device, seed=1))
        outs.append(read_values(out)[1])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("lr, base", [(None, 1e-3), (0.01, 0.01)])
def test_adam_runs_its_last_tenth_at_a_tenth_of_the_rate(tmp_path, lr, base):
    cfg = tmp_path / "small.cfg"
    cfg.write_text(small_cfg(size=28, filters=(4, 8)))
    data = write_shapes(tmp_path / "data", 4, 28)
    records = []
    train(TrainOptions(str(data), cfg=str(cfg), out=str(tmp_path / "out.weights"), iterations=20, batch=2,
                       lr=lr, augment="none"), records.append)
    lines = [record.to_dict() for record in records]
    rates = [line["lr"] for line in lines if "lr" in line]
    assert rates == pytest.approx([base] * 18 + [base / 10] * 2)


def test_progress_carries_darknets_batch_statistics(tmp_path):
    """Each --json progress line carries the detection layer's per-batch statistics beside the loss;
    with the whole dataset in one unaugmented batch, `count` is its number of object cells."""
    from detector.train.dataset import load_dataset
    from detector.train.objective import truth_grid
    cfg = tmp_path / "small.cfg"
    cfg.write_text(small_cfg(size=28, filters=(4, 8)))
    data = write_shapes(tmp_path / "data", 4, 28)
    records = []
    train(TrainOptions(str(data), cfg=str(cfg), out=str(tmp_path / "out.weights"), iterations=3, batch=4,
                       augment="none"), records.append)
    lines = [record.to_dict() for record in records]
    progress = [line for line in lines if "loss" in line]
    assert len(progress) == 3
    object_cells = int(truth_grid(list(load_dataset(data).labels), parse_cfg(cfg.read_text()).detection).is_object.sum())
    assert object_cells > 0
    for line in progress:
        assert set(line) == {"iteration", "loss", "lr", "images_per_s", "avg_iou", "pos_cat", "all_cat", "pos_obj",
                             "any_obj", "count"}
        assert line["count"] == object_cells
        assert 0 <= line["avg_iou"] <= 1
        assert all(np.isfinite(line[key]) for key in ("pos_cat", "all_cat", "pos_obj", "any_obj"))


def test_adam_matches_the_textbook_formula():
    """The in-place Adam equals m_hat / (sqrt(v_hat) + eps) steps, decay as L2 on weights only."""
    from detector.model import chainer_compat  # noqa: F401
    import chainer
    from chainer import gradient_check
    from detector.train.optimizers import Adam
    rng = np.random.default_rng(0)
    weight, bias = chainer.Parameter(rng.normal(size=(3, 4)).astype(np.float32)), chainer.Parameter(np.zeros(3, np.float32))
    adam = Adam([(weight, True), (bias, False)], decay=0.01)
    w, b = weight.array.astype(np.float64), bias.array.astype(np.float64)
    m, v = [np.zeros_like(w), np.zeros_like(b)], [np.zeros_like(w), np.zeros_like(b)]
    for t in range(1, 4):
        grads = [rng.normal(size=w.shape), rng.normal(size=b.shape)]
        weight.grad, bias.grad = grads[0].astype(np.float32), grads[1].astype(np.float32)
        adam.update(0.01)
        grads[0] = grads[0] + 0.01 * w
        for i, (p, g) in enumerate(zip((w, b), grads)):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            p -= 0.01 * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(weight.array, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias.array, b, rtol=1e-5, atol=1e-6)


def test_sgd_momentum_and_decay_follow_darknets_update():
    """Darknet's update_connected_layer, loop by loop, over steps with a changing learning rate:
    the layer accumulates `updates += -(sum of the batch's gradients)`, weights also get
    `updates += -decay * batch * weights`, then `param += lr / batch * updates` and
    `updates *= momentum`; biases are not decayed. DarknetSGD gets the batch-mean gradient."""
    from detector.model import chainer_compat  # noqa: F401
    import chainer
    from chainer import gradient_check
    from detector.train.optimizers import DarknetSGD
    rng = np.random.default_rng(1)
    batch, momentum, decay = 8, 0.9, 0.0005
    weight = chainer.Parameter(rng.normal(size=(3, 4)).astype(np.float32))
    bias = chainer.Parameter(rng.normal(size=3).astype(np.float32))
    sgd = DarknetSGD([(weight, True), (bias, False)], momentum, decay)
    w, b = weight.array.astype(np.float64), bias.array.astype(np.float64)
    w_updates, b_updates = np.zeros_like(w), np.zeros_like(b)
    for lr in (0.1, 0.05, 0.2, 0.2):
        mean_grads = [rng.normal(size=w.shape), rng.normal(size=b.shape)]
        weight.grad, bias.grad = (g.astype(np.float32) for g in mean_grads)
        sgd.update(lr)
        w_updates -= batch * mean_grads[0]  # backward: the sum over the batch of -gradient
        b_updates -= batch * mean_grads[1]
        b += lr / batch * b_updates
        b_updates *= momentum
        w_updates -= decay * batch * w
        w += lr / batch * w_updates
        w_updates *= momentum
    np.testing.assert_allclose(weight.array, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias.array, b, rtol=1e-5, atol=1e-6)
    assert np.abs(w_updates).max() > 1.0  # momentum carried something over from step to step
