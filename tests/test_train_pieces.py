"""The trainer's pieces alone: checkpoints, the optimizer's schedule, the records a run reports and
what a console shows for them."""
import json

import numpy as np
import pytest

from detector.model.cfg import load_cfg
from detector.model.weight_formats import read_header
from detector.model.weights_store import load_model
from detector.train.evaluate import Evaluation
from detector.train.objective import BatchStatistics
from detector.train.optimizers import Adam, DarknetSGD
from detector.train.report import ConsoleReport, DoneRecord, EvaluationRecord, StepRecord
from detector.train.trainable_net import TrainableNet, darknet_random_model
from detector.train.trainer import Checkpoints, TrainOptions, make_optimizer
from train_helpers import small_cfg


@pytest.fixture
def small(tmp_path):
    """(cfg path, a TrainableNet of Darknet's random initialisation of it)."""
    cfg = tmp_path / "small.cfg"
    cfg.write_text(small_cfg(size=28, filters=(4, 8), extra_net="policy=steps\nsteps=5\nscales=.1\n"))
    return cfg, TrainableNet(darknet_random_model(load_cfg(cfg), 0))


def test_checkpoints_save_only_when_due_and_the_file_loads(tmp_path, small):
    cfg, net = small
    out = tmp_path / "out.weights"
    checkpoints = Checkpoints(net, "a test", out, every_s=3600)
    checkpoints.save_if_due(seen=5)
    assert not out.exists()
    checkpoints.every_s = 0.0
    checkpoints.save_if_due(seen=7)
    assert read_header(out).seen == 7
    saved = load_model(out, cfg)
    first = net.to_model("now").params
    assert all(np.array_equal(saved.params[i][k], first[i][k]) for i in range(len(first)) for k in first[i])
    assert not list(tmp_path.glob(".*.tmp"))


def test_make_optimizer_follows_the_cfg_unless_told(small):
    cfg, net = small
    training = load_cfg(cfg).training
    sgd, rate = make_optimizer(net.trainable_parameters(), training, TrainOptions("d", optimizer="sgd"), 100)
    assert isinstance(sgd, DarknetSGD) and [rate(i) for i in (0, 4, 5, 99)] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    _, rate = make_optimizer(net.trainable_parameters(), training, TrainOptions("d", optimizer="sgd", lr=0.5), 100)
    assert rate(0) == 0.5
    adam, rate = make_optimizer(net.trainable_parameters(), training, TrainOptions("d"), 100)
    assert isinstance(adam, Adam) and [rate(i) for i in (0, 89, 90, 99)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


STATISTICS = BatchStatistics(0.5, 0.25, 0.125, 0.75, 0.0625, 3)


def steps(total):
    return [StepRecord(i, total, 1.0 / i, 0.001, 20.0, i * 0.5, STATISTICS) for i in range(1, total + 1)]


def test_json_lines_every_log_every_and_the_last_iteration():
    console = ConsoleReport(as_json=True, tty=True, log_every=10)  # --json wins over a terminal
    shown = [line for record in steps(25) for line in console.lines(record)]
    assert [where for where, _ in shown] == ["stdout"] * 3
    assert [json.loads(text)["iteration"] for _, text in shown] == [10, 20, 25]
    assert json.loads(shown[0][1]) == {"iteration": 10, "loss": 0.1, "lr": 0.001, "images_per_s": 20.0, "avg_iou": 0.5,
                                       "pos_cat": 0.25, "all_cat": 0.125, "pos_obj": 0.75, "any_obj": 0.0625, "count": 3}


def test_evaluation_and_done_records_as_json():
    evaluation = Evaluation({"person": 0.5, "dog": 0.25}, {"person": 3, "dog": 1}, 4, 0.5)
    console = ConsoleReport(as_json=True, tty=False)
    [(_, text)] = console.lines(EvaluationRecord(30, evaluation, "val/"))
    assert json.loads(text) == {"iteration": 30, "map": 0.375, "ap": {"person": 0.5, "dog": 0.25}}
    assert DoneRecord("out.weights", 64, 8, "", None).to_dict() == {"done": True, "out": "out.weights", "seen": 64,
                                                                     "iterations": 8}
    assert DoneRecord("o", 6, 3, "SIGTERM", 0.1234567).to_dict() == {"done": False, "out": "o", "seen": 6, "iterations": 3,
                                                                     "interrupted": "SIGTERM", "map": 0.123457}


def test_a_terminal_gets_one_bar_rewritten_in_place_and_a_log_gets_about_twenty_lines():
    bar = [line for record in steps(4) for line in ConsoleReport(as_json=False, tty=True).lines(record)]
    assert all(where == "stderr" and text.startswith("\r[") for where, text in bar)
    assert bar[-1][1].endswith("\n") and not any(text.endswith("\n") for _, text in bar[:-1])
    assert "4/4 loss 0.250 IoU 0.50 cat 0.25/0.12 obj 0.75/0.062 n 3 20.0 img/s ETA 0:00" in bar[-1][1]
    logged = [line for record in steps(400) for line in ConsoleReport(as_json=False, tty=False).lines(record)]
    assert len(logged) == 20 and all(where == "log" for where, _ in logged)
    assert logged[-1][1] == ("iteration 400/400 loss 0.0025 (Avg IOU 0.500, Pos Cat 0.250, All Cat 0.125, Pos Obj 0.750, "
                             "Any Obj 0.0625, count 3) lr 0.001 20.0 images/s")
    done = DoneRecord("o", 6, 3, "", None)
    assert ConsoleReport(as_json=False, tty=True).lines(done) == []  # only --json shows the summary


def test_batches_run_ahead_on_their_own_thread_and_surface_its_error(tmp_path, small):
    """`ahead` (the frozen layers) runs on each drawn batch on a second thread; the step receives
    its output with the batch's labels, and an error there reaches the step instead of a hang."""
    import threading
    from dataset_files import write_darknet_folder
    from detector.train.dataset import load_dataset
    from detector.train.trainer import _Batches
    cfg, net = small
    dataset = load_dataset(write_darknet_folder(tmp_path / "data", {"a.png": "0 0.5 0.5 0.2 0.4\n", "b.png": ""}))
    calls = []

    def ahead(blob):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise RuntimeError("the frozen layers failed")
        return blob.sum(axis=(1, 2, 3))

    batches = _Batches(dataset, net.spec, TrainOptions(str(tmp_path), batch=2), np.random.default_rng(0), ahead)
    try:
        for _ in range(2):
            features, labels = batches.next()
            assert features.shape == (2,) and len(labels) == 2
            assert sorted(len(boxes) for boxes in labels) == [0, 1]  # one pass over both images per batch
        with pytest.raises(RuntimeError, match="the frozen layers failed"):
            batches.next()
    finally:
        batches.close()
    assert set(calls) == {"train-ahead"}
    assert not any(thread.is_alive() for thread in batches.threads)


def test_an_unreadable_image_reaches_the_step_through_the_ahead_thread(tmp_path, small):
    from dataset_files import write_darknet_folder
    from detector.train.dataset import DatasetError, load_dataset
    from detector.train.trainer import _Batches
    cfg, net = small
    root = write_darknet_folder(tmp_path / "data", {"a.png": "0 0.5 0.5 0.2 0.4\n"})
    dataset = load_dataset(root)
    (root / "images" / "a.png").write_bytes(b"not a picture")
    batches = _Batches(dataset, net.spec, TrainOptions(str(tmp_path), batch=1), np.random.default_rng(0),
                       ahead=lambda blob: blob)
    try:
        with pytest.raises(DatasetError, match="a.png: cannot read this image"):
            batches.next()
    finally:
        batches.close()
