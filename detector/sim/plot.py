"""The picture of a follow simulation: top-down paths on the left, errors over time on the right."""
from __future__ import annotations

import cv2
import numpy as np

from .follow import Run

WHITE, GREY, BLACK = (255, 255, 255), (200, 200, 200), (0, 0, 0)
PERSON_BGR, ROBOT_BGR, LIMIT_BGR, CROSSER_BGR = (40, 40, 220), (200, 110, 0), (60, 160, 60), (0, 150, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABELS = {  # figure -> how the picture says it
    "rms_bearing_deg_walking": "RMS bearing, walking: {:.1f} deg",
    "rms_distance_error_m_walking": "RMS distance error, walking: {:.2f} m",
    "mean_distance_error_m_walking": "mean distance error, walking: {:+.2f} m",
    "time_in_view": "person in view: {:.0%}",
    "settling_s": "settled (0.1 m) after the stop: {:.1f} s",
    "overshoot_m": "overshoot after the stop: {:.2f} m",
    "error_4s_after_stop_m": "error from 4 s after the stop: {:.2f} m",
    "turn_reversals_per_s": "turn reversals: {:.2f} per s",
    "min_distance_m": "closest: {:.2f} m",
    "following_person": "followed the person in {:.0%} of frames",
    "following_crosser": "followed the crosser in {:.0%} of frames",
    "min_distance_to_crosser_m": "closest to the crosser: {:.2f} m",
}


def _text(canvas, text, origin, scale=0.42, colour=BLACK):
    cv2.putText(canvas, text, origin, FONT, scale, colour, 1, cv2.LINE_AA)


def _paths(canvas, run: Run, left: int, top: int, size: int) -> None:
    points = np.array(run.person_xy + run.robot_xy + run.crosser_xy)
    low, high = points.min(axis=0) - 0.3, points.max(axis=0) + 0.3
    scale = (size - 20) / max(high - low)

    def pixel(xy):  # world x to the right, y up
        return (int(left + 10 + (xy[0] - low[0]) * scale), int(top + size - 10 - (xy[1] - low[1]) * scale))

    cv2.rectangle(canvas, (left, top), (left + size, top + size), GREY, 1)
    step = max(1, int(round(2.0 / run.scene.step_s)))
    for i in range(0, len(run.t), step):  # every 2 s: who was where, joined
        cv2.line(canvas, pixel(run.person_xy[i]), pixel(run.robot_xy[i]), GREY, 1, cv2.LINE_AA)
    if run.crosser_xy:  # where the robot came closest to the crosser, joined
        closest = int(np.argmin(run.crosser_distance_m))
        cv2.line(canvas, pixel(run.robot_xy[closest]), pixel(run.crosser_xy[closest]), CROSSER_BGR, 1, cv2.LINE_AA)
    for xy, colour in ((run.person_xy, PERSON_BGR), (run.crosser_xy, CROSSER_BGR), (run.robot_xy, ROBOT_BGR)):
        if not xy:
            continue
        cv2.polylines(canvas, [np.array([pixel(p) for p in xy], np.int32)], False, colour, 2, cv2.LINE_AA)
        cv2.circle(canvas, pixel(xy[-1]), 4, colour, -1, cv2.LINE_AA)
    metre = int(scale)
    cv2.line(canvas, (left + 10, top + 14), (left + 10 + metre, top + 14), BLACK, 2)
    _text(canvas, "1 m", (left + 14 + metre, top + 19))
    _text(canvas, "person", (left + 10, top + 38), colour=PERSON_BGR)
    _text(canvas, "robot (grey: where each was, every 2 s)", (left + 10, top + 56), colour=ROBOT_BGR)
    if run.crosser_xy:
        _text(canvas, "crosser (thin: where the robot came closest)", (left + 10, top + 74), colour=CROSSER_BGR)


def _series(canvas, run: Run, values, limit: float, span: float, label: str, box) -> None:
    """`values` over time in a box (left, top, width, height), +-`span` tall, +-`limit` marked."""
    left, top, width, height = box
    cv2.rectangle(canvas, (left, top), (left + width, top + height), GREY, 1)
    end = run.t[-1]

    def pixel(t, value):
        value = max(-span, min(span, value))
        return int(left + t / end * width), int(top + height / 2 - value / span * height / 2)

    for level in (-limit, limit):
        cv2.line(canvas, pixel(0, level), pixel(end, level), LIMIT_BGR, 1)
    cv2.line(canvas, pixel(0, 0), pixel(end, 0), GREY, 1)
    stop = pixel(run.stop_time_s, span)[0]
    cv2.line(canvas, (stop, top), (stop, top + height), GREY, 1)
    _text(canvas, "stops", (stop + 3, top + height - 6), colour=(120, 120, 120))
    cv2.polylines(canvas, [np.array([pixel(t, v) for t, v in zip(run.t, values)], np.int32)], False, ROBOT_BGR, 1,
                  cv2.LINE_AA)
    _text(canvas, label, (left + 4, top + 14))
    _text(canvas, f"+{span:g}", (left + width + 4, top + 10), colour=(120, 120, 120))
    _text(canvas, f"-{span:g}", (left + width + 4, top + height), colour=(120, 120, 120))


def draw(run: Run, path: str, figures: dict) -> None:
    """Write the picture of `run` to `path` (PNG)."""
    lines = [LABELS[name].format(value) if value is not None else LABELS[name].split(":")[0] + ": -"
             for name, value in figures.items()]
    canvas = np.full((max(520, 385 + 15 * len(lines)), 960, 3), WHITE, np.uint8)  # rows from y 388
    _paths(canvas, run, 10, 10, 500)
    error = [d - run.scene.distance_m for d in run.distance_m]
    _series(canvas, run, error, 0.1, 1.0, "distance - set distance, m (green: +-0.1)", (530, 10, 380, 150))
    _series(canvas, run, run.bearing_deg, 8.0, 20.0, "bearing to the person, deg, + right (green: +-8)", (530, 175, 380, 150))
    scene = run.scene
    _text(canvas, f"delay {scene.delay_s:g} s, {scene.rate_hz:g} messages/s, person {scene.walk_speed_m_s:g} m/s,",
          (530, 348), 0.4)
    _text(canvas, f"robot max speed {scene.max_speed:g}%, asked to keep {scene.distance_m:g} m", (530, 366), 0.4)
    for row, line in enumerate(lines):
        _text(canvas, line, (530, 388 + row * 15), 0.4)
    if not cv2.imwrite(str(path), canvas, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")
