"""The user-facing model commands: detect, bench, weights verify/fetch, and every bad input."""
import hashlib
import http.server
import json
import os
import threading

import numpy as np
import pytest

from conftest import run_cli
from darknet_files import make_params, write_seed_npz, write_weights
from detector.model.cfg import CFG_DIR


def assert_clean_error(result, *phrases, code=None):
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


@pytest.mark.parametrize("variant", ["yolo-tiny", "yolov1-tiny"])
@pytest.mark.parametrize("engine", ["onnxruntime", "opencv", "chainer"])
def test_detect_json_finds_the_planted_person(person_weights, test_image, variant, engine):
    result = run_cli("detect", test_image, "--weights", person_weights[variant], "--engine", engine, "--json")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.strip().splitlines()
    report = json.loads(line)
    assert (report["image"], report["width"], report["height"]) == (str(test_image), 640, 480)
    [person] = report["detections"]
    assert set(person) == {"cls", "cls_id", "confidence", "x", "y", "w", "h"}
    assert (person["cls"], person["cls_id"]) == ("person", 14)
    assert person["confidence"] == pytest.approx(0.8, abs=1e-5)
    assert (person["x"], person["y"], person["w"], person["h"]) == pytest.approx((0.75, 0.4, 0.2, 0.5), abs=1e-5)


def test_detect_saves_raw_outputs_and_annotations(person_weights, test_image, tmp_path):
    raw_path, png = tmp_path / "raw.npy", tmp_path / "out.png"
    result = run_cli("detect", test_image, test_image, "--weights", person_weights["yolov1-tiny"],
                     "--save-raw", raw_path, "--annotate", png)
    assert result.returncode == 0, result.stderr
    assert "person" in result.stdout
    raw = np.load(raw_path)
    assert raw.shape == (2, 1470) and raw.dtype == np.float32
    assert raw[0, 980 + (2 * 7 + 5) * 2] == pytest.approx(0.8)  # the planted confidence, cell (row 2, col 5)
    import cv2
    annotated = cv2.imread(str(tmp_path / "out-test.png"))
    original = cv2.imread(str(test_image))
    assert annotated.shape == original.shape
    assert (annotated != original).any(axis=2).sum() > 500  # a box and a label were drawn


def test_bench_json_reports_every_stage(person_weights):
    result = run_cli("bench", "--weights", person_weights["yolov1-tiny"], "--engine", "onnxruntime",
                     "--frames", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["engine"], report["device"], report["model"], report["frames"]) == ("onnxruntime", "cpu", "yolov1-tiny", 3)
    assert report["fps"] > 0 and report["precision"] == "fp32"
    # process CPU time per frame: at least the preprocessing's, at most all cores for the whole frame
    cores = os.cpu_count()
    assert report["stages"]["preprocess"]["median_ms"] * 0.2 < report["cpu_ms_per_frame"] <= \
        cores * report["stages"]["end_to_end"]["p95_ms"] * 1.5
    for stage in ("preprocess", "inference", "decode", "end_to_end"):
        assert 0 < report["stages"][stage]["median_ms"] <= report["stages"][stage]["p95_ms"]


def test_weights_verify(person_weights):
    path = person_weights["yolo-tiny"]
    result = run_cli("weights", "verify", path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "yolo-tiny" and report["bytes"] == 180_357_512 and report["loads"] is True
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_non_finite_parameters_fail_verify_and_run(v1_file, tmp_path):
    """Issue 17 item 9: the first 4,000 parameters NaN (verify used to say "loads: True"), or a single
    infinity at the end of the file; and a seed .npz with one NaN."""
    nan_file, inf_file = tmp_path / "nan.weights", tmp_path / "inf.weights"
    data = bytearray(v1_file.read_bytes())
    data[16:16 + 4 * 4000] = np.full(4000, np.nan, "<f4").tobytes()  # after the 16-byte header
    nan_file.write_bytes(data)
    data = bytearray(v1_file.read_bytes())
    data[-4:] = np.float32(np.inf).tobytes()
    inf_file.write_bytes(data)
    for path, count in ((nan_file, "4,000"), (inf_file, "1")):
        result = run_cli("weights", "verify", path, "--json")
        assert_clean_error(result, f"{count} of 27,099,950 parameters are not finite", code=1)
        assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    result = run_cli("run", "--source", "synthetic", "--no-http", "--max-frames", 1, "--weights", nan_file,
                     "--pub", "tcp://127.0.0.1:0")
    assert_clean_error(result, "4,000 of 27,099,950 parameters are not finite", code=78)
    assert result.stderr.count("\n") == 1, result.stderr
    layers = make_params("yolo-tiny", seed=2)
    layers[-1][1]["biases"][7] = np.nan
    write_seed_npz(tmp_path / "nan.npz", layers)
    assert_clean_error(run_cli("weights", "verify", tmp_path / "nan.npz"), "1 of 45,089,374 parameters are not finite")
    assert run_cli("weights", "verify", v1_file).returncode == 0


# --- bad input ---------------------------------------------------------------------------------

def test_missing_weights_file_says_how_to_get_one(test_image, tmp_path):
    result = run_cli("detect", test_image, "--weights", tmp_path / "nope.weights")
    assert_clean_error(result, "does not exist", "weights fetch", code=78)


@pytest.fixture(scope="module")
def v1_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("v1") / "yolov1-tiny.weights"
    write_weights(path, make_params("yolov1-tiny", seed=1))
    return path


def test_truncated_weights_name_expected_and_actual_sizes(v1_file, test_image, tmp_path):
    short = tmp_path / "short.weights"
    short.write_bytes(v1_file.read_bytes()[:-1000])
    result = run_cli("detect", test_image, "--weights", short)
    assert_clean_error(result, "108,398,816 bytes", "matches no shipped cfg", "yolo-tiny: 180,357,512",
                       "yolov1-tiny: 108,399,816", "truncated")
    result = run_cli("detect", test_image, "--weights", short, "--cfg", CFG_DIR / "yolov1-tiny.cfg")
    assert_clean_error(result, "needs exactly 108,399,816", "truncated: 1,000 bytes are missing")


def test_oversized_weights_and_wrong_cfg(v1_file, test_image, tmp_path):
    long = tmp_path / "long.weights"
    long.write_bytes(v1_file.read_bytes() + b"\0" * 8)
    result = run_cli("detect", test_image, "--weights", long, "--cfg", CFG_DIR / "yolov1-tiny.cfg")
    assert_clean_error(result, "8 bytes too many")
    result = run_cli("detect", test_image, "--weights", v1_file, "--cfg", CFG_DIR / "yolo-tiny.cfg")
    assert_clean_error(result, "cfg 'yolo-tiny' needs exactly 180,357,512", "size is that of the 'yolov1-tiny' model")


def test_unsupported_cfg_layer(v1_file, test_image, tmp_path):
    cfg = tmp_path / "odd.cfg"
    cfg.write_text((CFG_DIR / "yolov1-tiny.cfg").read_text().replace("[maxpool]", "[shortcut]", 1))
    result = run_cli("detect", test_image, "--weights", v1_file, "--cfg", cfg)
    assert_clean_error(result, "[shortcut] is not supported", f"{cfg}:")


def test_npz_with_missing_or_misshaped_arrays(test_image, tmp_path):
    layers = make_params("yolo-tiny", seed=2)
    write_seed_npz(tmp_path / "full.npz", layers)
    arrays = dict(np.load(tmp_path / "full.npz"))
    del arrays["l17/b"]
    np.savez(tmp_path / "missing.npz", **arrays)
    assert_clean_error(run_cli("detect", test_image, "--weights", tmp_path / "missing.npz"),
                       "array 'l17/b' is missing")
    arrays = dict(np.load(tmp_path / "full.npz"))
    arrays["c3/W"] = arrays["c3/W"][:, :, :2, :2]
    np.savez(tmp_path / "shape.npz", **arrays)
    assert_clean_error(run_cli("detect", test_image, "--weights", tmp_path / "shape.npz"),
                       "'c3/W' has shape (32, 16, 2, 2), expected (32, 16, 3, 3)")


def test_unreadable_image(v1_file, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    assert_clean_error(run_cli("detect", bad, "--weights", v1_file), "cannot read image", "not an image")
    assert_clean_error(run_cli("detect", tmp_path / "gone.png", "--weights", v1_file), "no such file")


def test_gpu_without_cupy_is_an_error_not_a_fallback(v1_file, test_image):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    assert_clean_error(run_cli("detect", test_image, "--weights", v1_file, "--device", "gpu"),
                       "--device gpu needs CuPy", "--device auto")
    assert_clean_error(run_cli("detect", test_image, "--weights", v1_file, "--engine", "opencv", "--device", "gpu"),
                       "runs on the CPU only")
    result = run_cli("detect", test_image, "--weights", v1_file, "--device", "auto", "--json")
    assert result.returncode == 0 and "using the CPU" in result.stderr


def test_bad_option_values(v1_file, test_image):
    result = run_cli("detect", test_image, "--weights", v1_file, "--threshold", "1.5")
    assert_clean_error(result, "--threshold: expected a number from 0 to 1, found '1.5'", code=2)
    result = run_cli("detect", test_image, "--weights", v1_file, "--engine", "tensorflow")
    assert_clean_error(result, "--engine: expected onnxruntime, opencv or chainer, found 'tensorflow'", code=2)


class _WrongFileHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html>moved</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_fetch_offline_and_wrong_download_save_nothing(tmp_path):
    result = run_cli("weights", "fetch", "--dest", tmp_path, "--mirror", "http://127.0.0.1:9")
    assert_clean_error(result, "Could not download http://127.0.0.1:9/tiny-yolov1.weights", "offline",
                       "expected size 108,399,816")
    server = http.server.HTTPServer(("127.0.0.1", 0), _WrongFileHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_cli("weights", "fetch", "--dest", tmp_path, "--mirror", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert_clean_error(result, "is 18 bytes", "expected 108,399,816 bytes", "Nothing was saved")
    assert list(tmp_path.iterdir()) == []


def test_bench_pipeline_times_capture_to_publish():
    result = run_cli("bench", "--pipeline", "--model", "yolov1-tiny", "--engine", "onnxruntime", "--frames", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] >= 4 and report["source"] == "synthetic"
    for stage in ("inference", "capture_to_publish", "capture_to_receive"):
        assert 0 < report["stages"][stage]["median_ms"] <= report["stages"][stage]["p95_ms"]
    # publication happens after inference of the same frame
    assert report["stages"]["capture_to_publish"]["median_ms"] > report["stages"]["inference"]["median_ms"]
