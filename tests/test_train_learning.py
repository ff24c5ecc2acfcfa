"""Training from random initialisation with the trainer's default settings learns the generated
shapes task: mAP@0.5 >= 0.5 on held-out images of the same generator, and `detect` on the trained
file reports the same boxes as the trainer's own evaluation. (Curves and timings: docs/measurements/training.md.)"""
import json

import pytest

from conftest import run_cli
from detector.train import shapes
from detector.train.trainer import TrainOptions, train

ITERATIONS = 5000  # the shapes cfg's max_batches; measured (docs/measurements/training.md): mAP 0.575 with one thread


@pytest.mark.long  # minutes on two cores: started first (conftest)
def test_training_from_scratch_reaches_map_one_half(tmp_path):
    train_dir = shapes.write_dataset(tmp_path / "train", 1500, seed=1, width=64, height=64)
    val_dir = shapes.write_dataset(tmp_path / "val", 150, seed=2, width=64, height=64)
    cfg = shapes.write_cfg(tmp_path / "shapes.cfg")
    out = tmp_path / "shapes.weights"
    # Only the data, the cfg and the output are given: everything else, the length of the run
    # included (the cfg's max_batches, as in Darknet), is a default.
    result = train(TrainOptions(str(train_dir), val=str(val_dir), cfg=str(cfg), out=str(out)))
    iteration, evaluation = result.evaluations[-1]
    assert iteration == ITERATIONS and result.seen == ITERATIONS * TrainOptions.batch
    assert sum(result.losses[-100:]) < 0.2 * sum(result.losses[:100])
    assert evaluation.map >= 0.5, evaluation.table()

    # `detect` loads the file with the cfg and names and finds the boxes the trainer's evaluation
    # found (above detect's threshold; NMS keeps the same boxes since suppressors score higher).
    images = sorted((val_dir / "images").iterdir())[:8]
    answer = run_cli("detect", *images, "--weights", out, "--cfg", cfg, "--names", val_dir / "classes.txt", "--json")
    assert answer.returncode == 0, answer.stderr
    found = [json.loads(line) for line in answer.stdout.splitlines()]
    assert sum(len(image["detections"]) for image in found) >= len(images)
    for image, own in zip(found, result.detections):
        # Same boxes, compared as sets: two engines may order near-equal confidences differently.
        expected = [(d.cls, d.confidence, d.x, d.y, d.w, d.h) for d in own if d.confidence > 0.2]
        got = [tuple(d[k] for k in ("cls", "confidence", "x", "y", "w", "h")) for d in image["detections"]]
        assert len(got) == len(expected)
        for want in expected:
            assert any(g[0] == want[0] and g[1:] == pytest.approx(want[1:], abs=1e-4) for g in got), want
