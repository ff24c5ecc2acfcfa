"""Every engine computes what Darknet computes, for files written byte for byte in each format."""
import cv2
import numpy as np
import pytest

from darknet_files import ARCHITECTURES, make_params, numpy_forward, write_seed_npz, write_weights
from detector.model.engines import create_engine
from detector.model.preprocess import to_blob
from detector.model.weights_store import load_model

CPU_ENGINES = ("chainer", "onnxruntime", "opencv")


def relative_error(found, reference):
    return float(np.max(np.abs(found - reference)) / np.max(np.abs(reference)))


@pytest.fixture(scope="module")
def image_blob(test_image):
    return to_blob(cv2.imread(str(test_image)), 448, 448)


@pytest.fixture(scope="module", params=["yolo-tiny", "yolov1-tiny"])
def network(request, image_blob):
    name = request.param
    layers = make_params(name, seed=11)
    return name, layers, numpy_forward(name, layers, image_blob[0])


@pytest.mark.parametrize("header", ["modern", "modern64", "legacy"])
def test_every_engine_matches_the_numpy_reference(network, header, image_blob, tmp_path):
    name, layers, reference = network
    path = tmp_path / f"{name}.weights"
    write_weights(path, layers, header)
    if header != "modern64":
        assert path.stat().st_size == ARCHITECTURES[name]["file_bytes"]
    model = load_model(path)  # the cfg is chosen by size
    assert model.name == name
    assert np.abs(reference).max() > 0.5  # the reference is not degenerate
    outputs = {}
    for engine in CPU_ENGINES:
        outputs[engine] = create_engine(model, engine).infer(image_blob)
        assert outputs[engine].shape == (1, 1470) and outputs[engine].dtype == np.float32
        assert relative_error(outputs[engine][0], reference) <= 1e-4, engine
    for engine in ("chainer", "opencv"):  # chainer: on NumPy 2 through chainer_compat
        assert relative_error(outputs[engine], outputs["onnxruntime"]) <= 1e-4, engine


def test_legacy_connected_matrices_are_transposed(tmp_path):
    """A legacy file read without the transpose would give different connected weights."""
    layers = make_params("yolov1-tiny", seed=5)
    write_weights(tmp_path / "legacy.weights", layers, "legacy")
    write_weights(tmp_path / "modern.weights", layers, "modern")
    legacy, modern = load_model(tmp_path / "legacy.weights"), load_model(tmp_path / "modern.weights")
    for a, b in zip(legacy.params, modern.params):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert "legacy" in legacy.source


@pytest.mark.parametrize("prefix", ["", "predictor/"])
def test_seed_npz_loads_the_same_model(image_blob, tmp_path, prefix):
    layers = make_params("yolo-tiny", seed=11)
    write_seed_npz(tmp_path / "seed.npz", layers, prefix)
    model = load_model(tmp_path / "seed.npz")
    assert model.name == "yolo-tiny"
    reference = numpy_forward("yolo-tiny", layers, image_blob[0])
    for engine in CPU_ENGINES:
        assert relative_error(create_engine(model, engine).infer(image_blob)[0], reference) <= 1e-4


def test_preprocess_is_rgb_planar_unit_range():
    frame_bgr = np.zeros((240, 320, 3), np.uint8)
    frame_bgr[..., 0] = 255  # pure blue in BGR
    blob = to_blob(frame_bgr, 448, 448)
    assert blob.shape == (1, 3, 448, 448) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[0, 2], 1.0)  # blue is the third RGB plane
    np.testing.assert_allclose(blob[0, :2], 0.0)
    # the resize itself is checked against Darknet's resize_image in test_preprocess.py


def test_gpu_engine_matches_cpu(network, image_blob, tmp_path):
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("no CUDA device")
    name, layers, reference = network
    write_weights(tmp_path / "w.weights", layers)
    engine = create_engine(load_model(tmp_path / "w.weights"), "chainer", "gpu:0")
    assert relative_error(engine.infer(image_blob)[0], reference) <= 1e-4
