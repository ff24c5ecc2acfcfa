"""--precision int8: a quantized graph of the same model, cached beside the weights by digest."""
import json
import logging
import shutil
import struct

import cv2
import numpy as np
import pytest

from conftest import run_cli
from darknet_files import make_params, write_weights
from detector.errors import UserError
from detector.model.engines import create_engine
from detector.model.predictor import Predictor
from detector.model.weights_store import load_model

# A small Tiny-YOLO v1 (batch-normalised and plain convolutions, a connected layer, the detection
# layer's 1470 outputs) so that quantization takes a second, not a minute.
SMALL_CFG = """[net]
width=28
height=28
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=16
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[connected]
output=1470
activation=linear
[detection]
classes=20
coords=4
rescore=1
side=7
num=2
softmax=0
sqrt=1
"""


def write_small_weights(path, seed=0, zero_conv=False, legacy=False):
    rng = np.random.default_rng(seed)
    conv1 = [rng.normal(0, 0.1, 8), rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.2, 8), rng.uniform(0.2, 2, 8),
             rng.standard_normal((8, 3, 3, 3)) * 0.5]
    conv2 = [rng.normal(0, 0.1, 16), np.zeros((16, 8, 3, 3)) if zero_conv else rng.standard_normal((16, 8, 3, 3)) * 0.2]
    fc_weights = rng.standard_normal((1470, 16 * 7 * 7)) * 0.07
    with open(path, "wb") as f:
        f.write(struct.pack("<3fi", 0.0001, 0.9, 0.0005, 0) if legacy else struct.pack("<4i", 0, 1, 0, 0))
        for array in conv1 + conv2 + [rng.normal(0, 0.1, 1470), fc_weights.T if legacy else fc_weights]:
            f.write(np.ascontiguousarray(array, "<f4").tobytes())
    return path


@pytest.fixture
def small(tmp_path):
    cfg = tmp_path / "small.cfg"
    cfg.write_text(SMALL_CFG)
    return cfg, tmp_path


def frames():
    rng = np.random.default_rng(5)
    return [cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (9, 9), 3) for _ in range(3)]


def relative_error(found, reference):
    return float(np.abs(found - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("variant", ["plain", "zero-weight layer", "legacy file"])
def test_int8_follows_fp32_and_is_cached_by_digest(small, variant, caplog):
    cfg, folder = small
    weights = write_small_weights(folder / "small.weights", zero_conv=variant == "zero-weight layer",
                                  legacy=variant == "legacy file")
    model = load_model(weights, cfg)
    fp32 = create_engine(model, "onnxruntime")
    with caplog.at_level(logging.INFO):
        int8 = create_engine(model, "onnxruntime", precision="int8")
    assert "building the int8 graph" in caplog.text
    caches = list(folder.glob("small.weights.int8-*.onnx"))
    assert len(caches) == 1 and int8.precision == "int8"
    for frame in frames():
        reference = Predictor(fp32).predict(frame).raw
        found = Predictor(int8).predict(frame).raw
        assert np.isfinite(found).all()
        assert relative_error(found, reference) <= 0.03, variant
    # Same file: the cache is used. Changed contents (same size): a new graph, never the old one.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        create_engine(load_model(weights, cfg), "onnxruntime", precision="int8")
    assert "from cache" in caplog.text and "building" not in caplog.text
    write_small_weights(weights, seed=1, legacy=variant == "legacy file")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        changed = create_engine(load_model(weights, cfg), "onnxruntime", precision="int8")
    assert "building the int8 graph" in caplog.text
    assert len(list(folder.glob("small.weights.int8-*.onnx"))) == 2
    changed_fp32 = create_engine(load_model(weights, cfg), "onnxruntime")
    frame = frames()[0]
    assert relative_error(Predictor(changed).predict(frame).raw, Predictor(changed_fp32).predict(frame).raw) <= 0.03


def test_int8_without_a_writable_cache_builds_in_memory_and_says_so_once(small, caplog):
    cfg, folder = small
    weights = write_small_weights(folder / "small.weights")
    model = load_model(weights, cfg)
    create_engine(model, "onnxruntime", precision="int8")
    cache = next(folder.glob("small.weights.int8-*.onnx"))
    cache.unlink()
    cache.mkdir()  # something that is not a file sits where the cache goes: it cannot be written
    with caplog.at_level(logging.INFO):
        engines = [create_engine(model, "onnxruntime", precision="int8") for _ in range(2)]
    assert caplog.text.count("building the int8 graph") == 2
    assert caplog.text.count("cannot cache the int8 graph") == 1
    assert not list(folder.glob("*.part"))
    frame = frames()[0]
    np.testing.assert_array_equal(Predictor(engines[0]).predict(frame).raw, Predictor(engines[1]).predict(frame).raw)


def test_damaged_cache_is_rebuilt(small, caplog):
    cfg, folder = small
    weights = write_small_weights(folder / "small.weights")
    create_engine(load_model(weights, cfg), "onnxruntime", precision="int8")
    cache = next(folder.glob("small.weights.int8-*.onnx"))
    cache.write_bytes(cache.read_bytes()[:1000])
    with caplog.at_level(logging.INFO):
        engine = create_engine(load_model(weights, cfg), "onnxruntime", precision="int8")
    assert "does not load" in caplog.text
    assert np.isfinite(Predictor(engine).predict(frames()[0]).raw).all()
    assert cache.stat().st_size > 1000


def test_calibration_folder(small, tmp_path_factory):
    cfg, folder = small
    model = load_model(write_small_weights(folder / "small.weights"), cfg)
    photos = tmp_path_factory.mktemp("photos")
    with pytest.raises(UserError, match="JPEG or PNG photos") as error:
        create_engine(model, "onnxruntime", precision="int8", calibration=photos)
    assert error.value.exit_code == 78
    for index, frame in enumerate(frames()):
        cv2.imwrite(str(photos / f"{index}.png"), frame)
    create_engine(model, "onnxruntime", precision="int8", calibration=photos)
    create_engine(model, "onnxruntime", precision="int8")
    assert len(list(folder.glob("small.weights.int8-*.onnx"))) == 2  # the calibration is part of the key


@pytest.mark.parametrize("engine", ["chainer", "opencv"])
def test_int8_on_an_fp32_engine_is_a_clear_error(small, engine):
    cfg, folder = small
    weights = write_small_weights(folder / "small.weights")
    image = folder / "frame.png"
    cv2.imwrite(str(image), frames()[0])
    result = run_cli("detect", image, "--weights", weights, "--cfg", cfg, "--engine", engine, "--precision", "int8")
    assert result.returncode == 78
    assert f"engine '{engine}' computes in fp32 only" in result.stderr and "--engine onnxruntime" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("run", "--weights", weights, "--cfg", cfg, "--precision", "int16", "--source", "synthetic")
    assert result.returncode == 2 and "--precision: expected fp32 or int8, found 'int16'" in result.stderr


@pytest.fixture(scope="module")
def person_at_both_precisions(person_weights, tmp_path_factory):
    """Real size (yolov1-tiny), the crafted file of conftest: fp32 and int8 predictors."""
    weights = shutil.copy(person_weights["yolov1-tiny"], tmp_path_factory.mktemp("int8") / "person.weights")
    model = load_model(weights)
    return tuple(Predictor(create_engine(model, "onnxruntime", precision=p)) for p in ("fp32", "int8"))


def test_planted_person_is_where_fp32_puts_it(person_at_both_precisions, test_image):
    fp32, int8 = person_at_both_precisions
    frame = cv2.imread(str(test_image))
    expected, found = fp32.predict(frame), int8.predict(frame)
    assert [d.to_dict() for d in found.detections] == [d.to_dict() for d in expected.detections]
    assert [(d.cls, d.x, d.y, d.w, d.h) for d in found.detections] == \
           [("person", 0.75, pytest.approx(0.4), pytest.approx(0.2), pytest.approx(0.5))]


SHARED_PHOTOS = ("darknet_person.jpg", "darknet_dog.jpg", "darknet_kite.jpg", "skimage_astronaut.png")


def test_planted_outputs_on_the_shared_photos(person_at_both_precisions, media):
    """The last connected layer stays float32, so values it carries come through int8 whole
    (quantized, it moved the planted ones by 2.06% of the largest output)."""
    fp32, int8 = person_at_both_precisions
    for photo in SHARED_PHOTOS:
        frame = cv2.imread(str(media / photo))
        expected, found = fp32.predict(frame), int8.predict(frame)
        assert relative_error(found.raw, expected.raw) <= 1e-6, photo
        assert [d.to_dict() for d in found.detections] == [d.to_dict() for d in expected.detections]


def test_raw_outputs_of_a_computing_network_on_the_shared_photos(tmp_path, media):
    """A yolov1-tiny whose every layer computes (generated weights, seed 3): int8 follows fp32 to
    within 6% of the largest output, measured 4.2-5.0% (docs/measurements/int8.md: the issue's 2% is not
    reached on untrained weights, which is why fp32 stays the default)."""
    weights = tmp_path / "computing.weights"
    write_weights(weights, make_params("yolov1-tiny", 3))
    model = load_model(weights)
    fp32, int8 = (Predictor(create_engine(model, "onnxruntime", precision=p)) for p in ("fp32", "int8"))
    errors = [relative_error(int8.predict(frame).raw, fp32.predict(frame).raw)
              for frame in (cv2.imread(str(media / photo)) for photo in SHARED_PHOTOS)]
    assert all(0 < error <= 0.06 for error in errors), errors


def test_bench_compares_precisions_in_one_run(small):
    cfg, folder = small
    weights = write_small_weights(folder / "small.weights")
    result = run_cli("bench", "--weights", weights, "--cfg", cfg, "--engine", "onnxruntime",
                     "--precision", "fp32,int8", "--frames", "3", "--json")
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["engine"], r["precision"]) for r in reports] == [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    assert all(r["cpu_ms_per_frame"] > 0 and r["stages"]["inference"]["median_ms"] > 0 for r in reports)
    result = run_cli("bench", "--weights", weights, "--cfg", cfg, "--engine", "chainer", "--precision", "int8")
    assert result.returncode == 78 and "computes in fp32 only" in result.stderr
