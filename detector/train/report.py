"""What a training run reports: one record per iteration, per evaluation and at the end, and the
text a console shows for them. The library never prints; `robot-detector train` prints the lines.

A record's `to_dict()` is its `--json` line. Each iteration's record carries the loss and the detection
layer's statistics of its batch, as Darknet prints them.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class StepRecord:
    iteration: int       # completed iterations, 1-based
    iterations: int      # of the whole run
    loss: float          # the batch-mean detection cost
    lr: float
    images_per_s: float  # since the run started
    elapsed_s: float
    statistics: object   # objective.BatchStatistics of the iteration's batch, as Darknet prints them

    def to_dict(self) -> dict:
        return {"iteration": self.iteration, "loss": round(self.loss, 6), "lr": self.lr,
                "images_per_s": round(self.images_per_s, 2), **self.statistics.as_dict()}


@dataclass(frozen=True)
class EvaluationRecord:
    iteration: int
    evaluation: object   # evaluate.Evaluation on --val
    source: str          # the --val dataset

    def to_dict(self) -> dict:
        return {"iteration": self.iteration, "map": round(self.evaluation.map, 6),
                "ap": {k: round(v, 6) for k, v in self.evaluation.ap.items()}}


@dataclass(frozen=True)
class DoneRecord:
    out: str
    seen: int            # images seen by the weights over all runs (the Darknet header's count)
    iterations: int      # completed in this run
    interrupted: str     # "" or the signal's name
    map: float | None    # the last evaluation's, if any

    def to_dict(self) -> dict:
        extra = {"interrupted": self.interrupted} if self.interrupted else {}
        if self.map is not None:
            extra["map"] = round(self.map, 6)
        return {"done": not self.interrupted, "out": self.out, "seen": self.seen, "iterations": self.iterations,
                **extra}


class Throughput:
    """Images per second since the run started."""

    def __init__(self):
        self.t_start = time.perf_counter()
        self.images = 0

    def add(self, images: int) -> tuple:
        """(images per second, elapsed seconds) after `images` more."""
        self.images += images
        elapsed = time.perf_counter() - self.t_start
        return (self.images / elapsed if elapsed > 0 else 0.0), elapsed


def statistics_text(statistics, short: bool = False) -> str:
    """Darknet's per-batch line: Avg IOU, Pos Cat, All Cat, Pos Obj, Any Obj, count. `short`:
    the same values in a form that keeps the progress bar on one terminal line."""
    def value(number):
        return "-" if number is None else f"{number:.2f}" if short else f"{number:.3f}"
    s = statistics
    if short:
        return (f"IoU {value(s.avg_iou)} cat {value(s.pos_cat)}/{value(s.all_cat)} "
                f"obj {value(s.pos_obj)}/{s.any_obj:.3f} n {s.count}")
    return (f"Avg IOU {value(s.avg_iou)}, Pos Cat {value(s.pos_cat)}, All Cat {value(s.all_cat)}, "
            f"Pos Obj {value(s.pos_obj)}, Any Obj {s.any_obj:.4f}, count {s.count}")


class ConsoleReport:
    """What a console shows for each record, as (where, text) pairs, `where` being "stdout",
    "stderr" (written as is) or "log" (one info line): JSON lines on stdout with `as_json`
    (iterations every `log_every`), else a one-line progress bar on a terminal, else log lines."""

    def __init__(self, as_json: bool, tty: bool, log_every: int = 10):
        self.as_json, self.tty, self.log_every = as_json, tty and not as_json, log_every

    def lines(self, record) -> list:
        if self.as_json:
            if isinstance(record, StepRecord) and not (record.iteration % self.log_every == 0
                                                       or record.iteration == record.iterations):
                return []
            return [("stdout", json.dumps(record.to_dict()) + "\n")]
        if isinstance(record, StepRecord):
            return self._step(record)
        if isinstance(record, EvaluationRecord):
            return [("log", f"iteration {record.iteration}: mAP {record.evaluation.map:.4f} on {record.source}")]
        return []

    def _step(self, record: StepRecord) -> list:
        iteration, total, last = record.iteration, record.iterations, record.iteration == record.iterations
        if self.tty:
            done = iteration / total
            eta_s = record.elapsed_s / done - record.elapsed_s if done else 0.0
            bar = "#" * int(10 * done)
            text = (f"\r[{bar:<10}] {iteration}/{total} loss {record.loss:.3f} {statistics_text(record.statistics, True)} "
                    f"{record.images_per_s:.1f} img/s ETA {int(eta_s // 60)}:{int(eta_s % 60):02d}")
            return [("stderr", text + ("\n" if last else ""))]
        if iteration % max(self.log_every, total // 20 or 1) == 0 or last:
            return [("log", f"iteration {iteration}/{total} loss {record.loss:.4f} ({statistics_text(record.statistics)}) "
                            f"lr {record.lr:g} {record.images_per_s:.1f} images/s")]
        return []
