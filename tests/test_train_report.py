"""The trainer's pieces alone: the records a run reports and what a console shows for them."""
import json

from detector.train.evaluate import Evaluation
from detector.train.report import ConsoleReport, DoneRecord, EvaluationRecord, StepRecord


def steps(total):
    return [StepRecord(i, total, 1.0 / i, 0.001, 20.0, i * 0.5) for i in range(1, total + 1)]


def test_json_lines_every_log_every_and_the_last_iteration():
    console = ConsoleReport(as_json=True, tty=True, log_every=10)  # --json wins over a terminal
    shown = [line for record in steps(25) for line in console.lines(record)]
    assert [where for where, _ in shown] == ["stdout"] * 3
    assert [json.loads(text)["iteration"] for _, text in shown] == [10, 20, 25]
    assert json.loads(shown[0][1]) == {"iteration": 10, "loss": 0.1, "lr": 0.001, "images_per_s": 20.0}


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
    assert "4/4 loss 0.2500 20.0 img/s ETA 0:00" in bar[-1][1]
    logged = [line for record in steps(400) for line in ConsoleReport(as_json=False, tty=False).lines(record)]
    assert len(logged) == 20 and all(where == "log" for where, _ in logged)
    assert logged[-1][1] == "iteration 400/400 loss 0.0025 lr 0.001 20.0 images/s"
    done = DoneRecord("o", 6, 3, "", None)
    assert ConsoleReport(as_json=False, tty=True).lines(done) == []  # only --json shows the summary
