"""Issue 10's acceptance: the robot client's controller in the closed-loop follow simulator."""
import json

import cv2
import numpy as np
import pytest

from conftest import run_cli
from detector.sim.follow import Scene, simulate
from detector.sim.plot import CROSSER_BGR, PERSON_BGR, ROBOT_BGR


@pytest.mark.parametrize("delay_s", [0.1, 0.3])
def test_follows_a_walking_person_through_two_arcs(delay_s):
    run = simulate(Scene(delay_s=delay_s, walk_speed_m_s=0.2, path="arcs"))
    figures = run.figures()
    assert figures["time_in_view"] == 1.0, figures
    assert figures["rms_bearing_deg_walking"] <= 8.0, figures
    assert figures["rms_distance_error_m_walking"] <= 0.25, figures
    assert figures["error_4s_after_stop_m"] <= 0.1, figures
    assert figures["overshoot_m"] <= 0.1, figures
    assert figures["turn_reversals_per_s"] <= 0.5, figures
    # the run is what it says: the person walked two arcs (turned left, then back right) and stood
    assert run.stop_time_s == pytest.approx(2 + 2 * (np.pi / 2 * 1.5 / 0.2) + 2, abs=0.01)
    assert max(y for _, y in run.person_xy) > 2.0 and run.t[-1] == pytest.approx(run.stop_time_s + 8, abs=0.02)


@pytest.mark.parametrize("start_m", [2.0, 1.0, 0.6])
def test_settles_at_one_metre_from_a_standing_person(start_m):
    run = simulate(Scene(path="stand", start_distance_m=start_m, stand_s=8.0))
    figures = run.figures()
    assert figures["settling_s"] is not None and figures["settling_s"] < 6.0, figures
    assert abs(run.distance_m[-1] - 1.0) <= 0.1, figures  # settled: within 0.1 m from then to the end
    assert figures["min_distance_m"] >= 0.4 and figures["overshoot_m"] <= 0.1, figures


def test_a_robot_too_slow_for_the_person_fails_the_figures():
    """At 30% the robot's top speed (0.15 m/s) is below the person's 0.2 m/s: the figures must show it."""
    figures = simulate(Scene(max_speed=30)).figures()
    assert figures["rms_distance_error_m_walking"] > 0.25 and figures["mean_distance_error_m_walking"] > 0.2


def test_picture_and_command_line(tmp_path):
    png = tmp_path / "follow.png"
    result = run_cli("simulate-follow", "--delay", "0.3", "--json", "--png", png)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures == simulate(Scene(delay_s=0.3)).figures()  # deterministic: the same seed, the same run
    picture = cv2.imread(str(png))
    assert picture.shape == (520, 960, 3)
    for colour in (PERSON_BGR, ROBOT_BGR):  # both paths are drawn
        assert np.count_nonzero(np.all(picture == colour, axis=2)) > 200
    bad = run_cli("simulate-follow", "--client-option=--drive-gain=40")
    assert bad.returncode == 78 and "no longer a percentage" in bad.stderr and "Traceback" not in bad.stderr


# --- issue 18 item 6: a second person crosses between the robot and the followed person ---

class OverlapTracker:
    """The target tracker before issue 18, for the control run: keep the detection overlapping the
    last one most (IoU >= 0.3), hold it 0.5 s when none does, then lock onto the largest."""

    def __init__(self):
        self.last, self.t_seen = None, -1.0

    def update(self, t, detections, frame_bgr=None):
        from detector.daemon.tracker import LOST, Box, Target, TrackerUpdate
        from detector.model.decode import iou_matrix
        match = None
        if detections and self.last is None:
            match = max(detections, key=lambda d: d.w * d.h)
        elif detections:
            overlaps = iou_matrix(np.array([self.last[3:]] + [d[3:] for d in detections], np.float32))[0, 1:]
            if overlaps.max() >= 0.3:
                match = detections[int(overlaps.argmax())]
        if match is None:
            if self.last is not None and t - self.t_seen <= 0.5:
                return TrackerUpdate((), Target(1, "held", Box(*self.last[3:]), 0.8, None), (None,) * len(detections))
            self.last = None
            return TrackerUpdate((), LOST, (None,) * len(detections))
        self.last, self.t_seen = match, t
        return TrackerUpdate((), Target(1, "tracking", Box(*match[3:]), 0.8, match),
                             tuple(1 if d is match else None for d in detections))


def ends_behind_the_person(run):
    return abs(run.distance_m[-1] - run.scene.distance_m) <= 0.15 and abs(run.bearing_deg[-1]) <= 10.0


# (5, 0.1, 1) and (5, 0.1, 4): where earlier versions of the tracker swapped
@pytest.mark.parametrize("rate_hz, miss, seed", [(30, 0.0, 1), (30, 0.1, 2), (10, 0.0, 3), (10, 0.1, 4), (5, 0.0, 5),
                                                  (5, 0.1, 1), (5, 0.1, 4)])
def test_a_person_crossing_in_between_is_not_followed_nor_run_into(rate_hz, miss, seed):
    """The other person passes 0.5 m in front of the followed one (hiding them while the boxes
    overlap); the daemon's tracker keeps the followed one."""
    run = simulate(Scene(path="cross", rate_hz=rate_hz, miss=miss, seed=seed))
    figures = run.figures()
    assert ends_behind_the_person(run), (run.distance_m[-1], run.bearing_deg[-1], figures)
    assert figures["min_distance_to_crosser_m"] >= 0.4, figures
    assert figures["following_crosser"] == 0.0 and figures["following_person"] >= 0.85, figures
    # the run is what it says: the crosser passed in front of the robot, in view, hiding the person
    assert figures["min_distance_to_crosser_m"] <= 0.8 and figures["time_in_view"] < 0.99, figures
    assert run.crosser_xy[0][1] < -2 and run.crosser_xy[-1][1] > 2


def test_the_crossing_figures_catch_a_tracker_that_swaps():
    """Control: with the old overlap tracker the robot follows the crosser away, and the figures say so."""
    run = simulate(Scene(path="cross"), tracker=OverlapTracker())
    figures = run.figures()
    assert figures["following_crosser"] > 0.5 and not ends_behind_the_person(run), figures


def test_cross_on_the_command_line(tmp_path):
    png = tmp_path / "cross.png"
    result = run_cli("simulate-follow", "--path", "cross", "--miss", "0.1", "--json", "--png", png)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures == simulate(Scene(path="cross", miss=0.1)).figures()
    assert figures["following_crosser"] == 0.0 and figures["min_distance_to_crosser_m"] >= 0.4
    picture = cv2.imread(str(png))
    for colour in (PERSON_BGR, ROBOT_BGR, CROSSER_BGR):  # all three paths are drawn
        assert np.count_nonzero(np.all(picture == colour, axis=2)) > 200, colour
    text = run_cli("simulate-follow", "--path", "cross")
    assert "following_crosser" in text.stdout and "min_distance_to_crosser_m" in text.stdout
    bad = run_cli("simulate-follow", "--path", "cross", "--miss", "1")
    assert bad.returncode == 2 and "--miss" in bad.stderr and "Traceback" not in bad.stderr
