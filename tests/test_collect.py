"""`robot-detector collect` on the synthetic source: a Darknet-layout dataset with labels from the
model, numbering that continues without overwriting, and a folder the other commands accept."""
import json

import numpy as np

from conftest import run_cli
from detector.model.decode import VOC_CLASSES, Detection
from detector.train.collect import DatasetWriter, label_lines
from detector.train.dataset import load_dataset


def test_collect_twice_then_evaluate(tmp_path, small_model):
    out = tmp_path / "robot-view"
    (out / "images").mkdir(parents=True)
    (out / "images" / "000004.jpg").write_bytes(b"a person's own file")  # must survive untouched
    for _ in range(2):
        result = run_cli("collect", "--source", "synthetic", "--every", "0", "--max", "2", "--out", out,
                         "--weights", small_model[0], "--cfg", small_model[1])
        assert result.returncode == 0, result.stderr
        assert "collected 2 frame(s)" in result.stdout
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "000004.jpg", "000005.jpg", "000006.jpg", "000007.jpg", "000008.jpg"]
    assert (out / "images" / "000004.jpg").read_bytes() == b"a person's own file"
    assert (out / "classes.txt").read_text().split() == list(VOC_CLASSES)
    # the small model reports one person at (0.75, 0.4, 0.2, 0.5): that is the pre-filled label
    for number in range(5, 9):
        fields = (out / "labels" / f"{number:06d}.txt").read_text().split()
        assert fields[0] == "14" and np.allclose([float(v) for v in fields[1:]], [0.75, 0.4, 0.2, 0.5], atol=1e-5)
    (out / "images" / "000004.jpg").unlink()  # not an image: the dataset check would (rightly) refuse it
    dataset = load_dataset(out)
    assert len(dataset) == 4 and dataset[0].image_bgr.shape == (480, 640, 3)
    evaluated = run_cli("evaluate", out, "--weights", small_model[0], "--cfg", small_model[1], "--json")
    assert json.loads(evaluated.stdout) == {"map": 1.0, "ap": {"person": 1.0}, "images": 4, "iou": 0.5,
                                            "engine": "onnxruntime", "precision": "fp32"}


def test_collect_refuses_a_folder_of_other_classes(tmp_path, small_model):
    out = tmp_path / "other"
    out.mkdir()
    (out / "classes.txt").write_text("cone\nball\n")
    result = run_cli("collect", "--source", "synthetic", "--max", "1", "--out", out,
                     "--weights", small_model[0], "--cfg", small_model[1])
    assert result.returncode == 78 and "classes.txt lists cone, ball" in result.stderr
    assert (out / "classes.txt").read_text() == "cone\nball\n" and not (out / "images").exists()


def test_labels_are_clipped_to_the_image_and_numbers_skip_taken_files(tmp_path):
    edge = Detection("person", 14, 0.9, 0.95, 0.1, 0.2, 0.4)  # reaches past the right and top edges
    outside = Detection("dog", 11, 0.5, 1.2, 0.5, 0.1, 0.1)
    assert label_lines([edge, outside]) == "14 0.925000 0.150000 0.150000 0.300000\n"
    writer = DatasetWriter(tmp_path / "ds", ("person",))
    (tmp_path / "ds" / "labels" / "000000.txt").write_text("taken meanwhile")
    path = writer.add(np.zeros((4, 4, 3), np.uint8), [])
    assert path.name == "000001.jpg" and (tmp_path / "ds" / "labels" / "000000.txt").read_text() == "taken meanwhile"
