"""`robot-detector collect` on the synthetic source: a Darknet-layout dataset with labels from the
model, numbering that continues without overwriting, and a folder the other commands accept."""
import json
import re

import cv2
import numpy as np
import pytest

from conftest import run_cli
from daemon_helpers import Daemon, run_until_exit
from dataset_files import write_brightness_clip, write_brightness_person_model
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


# --- active collection -------------------------------------------------------------------------
# A clip whose person score follows its brightness (write_brightness_person_model): two stretches
# with the person at varying scores, each followed by a dark stretch where the model sees no one.
BRIGHT_1, BRIGHT_2 = [40, 80, 120, 160, 200, 240, 180, 100], [90, 130, 170, 210, 60, 110, 150, 230]
DARK = [8] * 8
CLIP_LEVELS = BRIGHT_1 + DARK + BRIGHT_2 + DARK
THRESHOLD = 0.1  # the dark frames (about 0.06) are below it, every bright one above


@pytest.fixture(scope="module")
def brightness_clip(tmp_path_factory):
    """(weights, cfg, clip, the daemon's best person score for each frame index, the frame
    indices where the daemon's tracker reported its target lost)."""
    folder = tmp_path_factory.mktemp("brightness")
    weights, cfg = write_brightness_person_model(folder)
    clip = write_brightness_clip(folder / "clip.avi", CLIP_LEVELS, fps=4.0)
    daemon = Daemon("--source", clip, "--weights", weights, "--cfg", cfg, "--threshold", THRESHOLD,
                    "--max-frames", len(CLIP_LEVELS), http=False)
    listener = run_until_exit(daemon, topics=["person", "detections", "status"])
    assert [s["dropped"] for s in listener.of("status")][-1] == 0, "frames were dropped: seq is not the frame index"
    scores = {m["seq"]: max([d["confidence"] for d in m["detections"] if d["cls"] == "person"], default=0.0)
              for m in listener.of("detections")}
    found = {m["seq"]: m["found"] for m in listener.of("person")}
    # the first message or two may go out before the subscription is through (ZeroMQ's slow joiner)
    assert set(scores) >= set(range(2, len(CLIP_LEVELS))), f"the daemon did not report every frame: {sorted(scores)}"
    losses = [seq for seq in sorted(found) if found.get(seq - 1) and not found[seq]]
    return weights, cfg, clip, scores, losses


def saved_records(out):
    return [json.loads(p.read_text()) for p in sorted((out / "labels").glob("*.detections.json"))]


def test_select_uncertain_saves_the_frames_scored_within_the_band(tmp_path, brightness_clip):
    weights, cfg, clip, scores, _ = brightness_clip
    low, high = 0.3, 0.6
    out = tmp_path / "uncertain"
    result = run_cli("collect", "--source", clip, "--out", out, "--select", "uncertain", "--band", f"{low},{high}",
                     "--every", "0", "--threshold", "0.5", "--weights", weights, "--cfg", cfg)
    assert result.returncode == 0, result.stderr
    records = saved_records(out)
    saved = [r["frame_index"] for r in records]
    in_band = [i for i, s in scores.items() if low < s <= high]
    out_of_band = [i for i, s in scores.items() if not low < s <= high]
    assert len(in_band) >= 3 and len(out_of_band) >= 3, scores  # the clip is a fair test
    assert len(saved) >= 3, (result.stdout, scores)
    for index in saved:  # each saved frame's score, as the daemon computed it, lies in the band
        assert index in scores and low < scores[index] <= high, (index, scores.get(index))
    assert set(saved) <= set(in_band)
    match = re.search(r"(\d+) frame\(s\) examined: (\d+) saved, (\d+) not selected", result.stdout)
    assert match and int(match.group(2)) == len(saved) and int(match.group(3)) >= 3, result.stdout
    # below --threshold (0.5) but inside the band: decoded anyway, pre-filled, its confidence kept
    low_scored = [r for r in records if scores[r["frame_index"]] <= 0.5]
    assert low_scored, scores
    for record in low_scored:
        name = f"{records.index(record):06d}"
        assert (out / "labels" / f"{name}.txt").read_text().split()[0] == "14"
        assert record["boxes"][0]["confidence"] == pytest.approx(scores[record["frame_index"]], abs=1e-4)


def test_select_lost_saves_the_frames_around_each_loss(tmp_path, brightness_clip):
    weights, cfg, clip, _, losses = brightness_clip
    assert len(losses) == 2, losses  # the target goes away twice (after the tracker's grace period)
    out = tmp_path / "lost"
    result = run_cli("collect", "--source", clip, "--out", out, "--select", "lost", "--around", "0.6",
                     "--every", "0", "--threshold", THRESHOLD, "--weights", weights, "--cfg", cfg)
    assert result.returncode == 0, result.stderr
    saved = [r["frame_index"] for r in saved_records(out)]
    # 0.6 s at 4 frames a second: about 2 frames each side; one more of slack for timing
    for loss in losses:
        near = [i for i in saved if abs(i - loss) <= 3]
        assert any(i < loss for i in near) and any(i >= loss for i in near), (loss, saved)
    assert all(any(abs(i - loss) <= 3 for loss in losses) for i in saved), (losses, saved)
    assert not any(i in saved for i in (0, 1, 2, 16, 17, 18)), saved  # far from any loss


def test_near_duplicates_are_skipped(tmp_path, small_model):
    clip = write_brightness_clip(tmp_path / "still.avi", [100] * 6, fps=20.0)
    still = tmp_path / "still-frames.avi"  # the same picture six times: the block does not move
    writer = cv2.VideoWriter(str(still), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (160, 120))
    first = cv2.VideoCapture(str(clip)).read()[1]
    for _ in range(6):
        writer.write(first)
    writer.release()
    result = run_cli("collect", "--source", still, "--out", tmp_path / "d", "--every", "0",
                     "--weights", small_model[0], "--cfg", small_model[1])
    assert result.returncode == 0, result.stderr
    assert len(saved_records(tmp_path / "d")) == 1 and "near-duplicate" in result.stdout, result.stdout


def test_select_options_are_checked(tmp_path, small_model):
    for bad, message in ((["--band", "0.5,0.2"], "expected LOW,HIGH with 0 <= LOW < HIGH <= 1"),
                         (["--band", "0.2"], "found '0.2'"), (["--select", "some"], "expected all, uncertain or lost, found 'some'"),
                         (["--target-class", "unicorn"], "--target-class must be one of the class names")):
        result = run_cli("collect", "--source", "synthetic", "--max", "1", "--out", tmp_path / "x", *bad,
                         "--weights", small_model[0], "--cfg", small_model[1])
        assert result.returncode == 2, (bad, result.stderr)
        assert message in result.stderr.splitlines()[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()
