"""VOC average precision against hand-computed cases, and `robot-detector evaluate` end to end,
including its one-line errors for each kind of bad dataset."""
import json
import re

import numpy as np
import pytest

from conftest import run_cli
from dataset_files import write_darknet_folder
from detector.errors import UserError
from detector.model.decode import VOC_CLASSES, Detection
from detector.train.evaluate import average_precision, evaluate_detections
from detector.train.labels import LabelBoxes

NAMES = ("person", "dog", "cat")
B1, B2 = (0.3, 0.3, 0.2, 0.4), (0.7, 0.6, 0.2, 0.2)


def det(cls_id, confidence, box):
    return Detection(NAMES[cls_id], cls_id, confidence, *box)


def test_ties_duplicates_no_truth_and_no_detections():
    truths = [LabelBoxes([0], [B1]), LabelBoxes([0, 1], [B2, (0.2, 0.8, 0.1, 0.1)])]
    detections = [
        [det(0, 0.9, B1), det(0, 0.8, (0.31, 0.3, 0.2, 0.4))],  # the second finds a taken truth: FP
        [det(0, 0.8, B2), det(2, 0.7, B2)],                     # ties with the duplicate; a cat nobody labelled
    ]
    result = evaluate_detections(truths, detections, NAMES)
    # person ranked: TP (0.9), FP (0.8, image 0 first), TP (0.8): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    # -> AP = 1/2 * 1 + 1/2 * 2/3. dog has a truth and no detection: 0. cat has no truth: left out.
    assert result.ap == pytest.approx({"person": 0.5 + 1 / 3, "dog": 0.0})
    assert result.map == pytest.approx((0.5 + 1 / 3) / 2)
    assert result.truths == {"person": 2, "dog": 1} and result.images == 2
    # the tie resolved the other way (the true positive's image first) gives AP 1: order is dataset order
    swapped = evaluate_detections(truths[::-1], detections[::-1], NAMES)
    assert swapped.ap["person"] == pytest.approx(1.0)
    assert json.loads(result.to_json()) == {"map": round((0.5 + 1 / 3) / 2, 6),
                                            "ap": {"person": 0.833333, "dog": 0.0}, "images": 2, "iou": 0.5}


def test_overlap_below_the_iou_is_a_false_positive_and_the_threshold_is_inclusive():
    truths = [LabelBoxes([0], [(0.5, 0.5, 0.5, 0.5)])]
    shifted = (0.75, 0.5, 0.5, 0.5)  # overlap 0.25 x 0.5 of 0.25 + 0.25 - 0.125: IoU 1/3
    assert evaluate_detections(truths, [[det(0, 0.9, shifted)]], NAMES).ap["person"] == 0.0
    assert evaluate_detections(truths, [[det(0, 0.9, shifted)]], NAMES, iou=1 / 3 - 1e-9).ap["person"] == 1.0
    # a false positive ranked first halves the precision at full recall
    two = [[det(0, 0.9, shifted), det(0, 0.5, (0.5, 0.5, 0.5, 0.5))]]
    assert evaluate_detections(truths, two, NAMES).ap["person"] == pytest.approx(0.5)


def test_all_point_interpolation_uses_the_precision_envelope():
    # precision rises after a dip: the envelope takes the later, higher value
    recall = np.array([0.25, 0.25, 0.5, 0.75, 0.75, 1.0])
    precision = np.array([1.0, 0.5, 0.67, 0.75, 0.6, 0.667])
    assert average_precision(recall, precision) == pytest.approx(0.25 * 1 + 0.25 * 0.75 + 0.25 * 0.75 + 0.25 * 0.667)


def test_no_labelled_objects_is_an_error():
    with pytest.raises(UserError, match="no labelled objects"):
        evaluate_detections([LabelBoxes.empty()], [[det(0, 0.9, B1)]], NAMES)


PERSON = VOC_CLASSES.index("person")
DOG = VOC_CLASSES.index("dog")


def test_evaluate_command_with_the_daemons_decode(tmp_path, small_model):
    # The small model reports one person at (0.75, 0.4, 0.2, 0.5) with probability 0.8 on any image.
    root = write_darknet_folder(tmp_path / "data", {
        "a.png": f"{PERSON} 0.75 0.4 0.2 0.5\n",
        "b.png": f"{PERSON} 0.2 0.5 0.2 0.3\n{DOG} 0.5 0.5 0.4 0.4\n",
    }, class_names=VOC_CLASSES)
    result = run_cli("evaluate", root, "--weights", small_model[0], "--cfg", small_model[1], "--json")
    assert result.returncode == 0, result.stderr
    # person: the tie at 0.8 ranks image a (TP) before b (FP): AP 1/2; dog: AP 0
    assert json.loads(result.stdout) == {"map": 0.25, "ap": {"dog": 0.0, "person": 0.5}, "images": 2, "iou": 0.5,
                                         "engine": "onnxruntime", "precision": "fp32"}
    table = run_cli("evaluate", root, "--weights", small_model[0], "--cfg", small_model[1], "--iou", "0.9")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in table.stdout.splitlines()[1:]}
    assert rows == {"dog": ["1", "0.0000"], "person": ["2", "0.5000"], "mAP": ["3", "0.2500"]}


def test_evaluate_runs_the_int8_engine_when_asked(tmp_path, small_model):
    """`--precision int8` builds and runs the int8 graph (issue 19: it used to evaluate fp32): the
    JSON names what ran, and the int8 graph's cache file appears beside the weights only then."""
    import shutil
    root = write_darknet_folder(tmp_path / "data", {"a.png": f"{PERSON} 0.75 0.4 0.2 0.5\n"}, class_names=VOC_CLASSES)
    for precision in ("fp32", "int8"):
        folder = tmp_path / precision
        folder.mkdir()
        weights = shutil.copy(small_model[0], folder / "small.weights")
        result = run_cli("evaluate", root, "--weights", weights, "--cfg", small_model[1], "--precision", precision,
                         "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert (report["engine"], report["precision"]) == ("onnxruntime", precision)
        assert report["ap"]["person"] == 1.0  # int8 still finds the planted person
        assert len(list(folder.glob("small.weights.int8-*.onnx"))) == (precision == "int8")
    result = run_cli("evaluate", root, "--weights", weights, "--cfg", small_model[1], "--precision", "int8",
                     "--engine", "opencv")
    assert result.returncode == 78 and "computes in fp32 only" in result.stderr


BAD_DATASETS = {
    "class-range": ({"a.png": "3 0.5 0.5 0.1 0.1"}, r"a\.txt:1: class id 3 is out of range"),
    "class-float": ({"a.png": "0.0 0.5 0.5 0.1 0.1"}, r"a\.txt:1: class id must be a whole number"),
    "non-numeric": ({"a.png": "0 x 0.5 0.1 0.1"}, r"a\.txt:1: coordinates must be numbers, found 'x'"),
    "out-of-range": ({"a.png": "0 0.5 0.5 -0.1 0.1"}, r"a\.txt:1: coordinates must be normalised"),
    "field-count": ({"a.png": "0 0.5 0.5 0.1 0.1 7"}, r"a\.txt:1: expected 5 fields"),
    "missing-label": ({"a.png": None}, r"a\.txt: label file not found"),
    "unreadable-image": ({"a.png": ""}, r"a\.png: not an image OpenCV can read"),
    "missing-image": ({}, r"gone\.png: image file not found"),
    "empty": ({}, r"empty dataset"),
    "no-classes": ({"a.png": ""}, r"classes\.txt: not found"),
}


@pytest.mark.parametrize("kind", BAD_DATASETS)
def test_bad_datasets_give_one_line_errors(tmp_path, kind):
    labels, message = BAD_DATASETS[kind]
    root = write_darknet_folder(tmp_path / "data", labels, class_names=("person", "dog", "cat"),
                                classes_txt=kind != "no-classes")
    spec = root
    if kind == "unreadable-image":
        (root / "images" / "a.png").write_bytes(b"\x00" * 100)
    if kind == "missing-image":
        spec = tmp_path / "list.txt"
        spec.write_text("data/images/gone.png\n")
    result = run_cli("evaluate", spec, "--weights", tmp_path / "never-read.weights")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robot-detector: error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.stderr
