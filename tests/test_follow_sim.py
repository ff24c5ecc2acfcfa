"""Issue 10's acceptance: the robot client's controller in the closed-loop follow simulator."""
import json

import cv2
import numpy as np
import pytest

from conftest import run_cli
from detector.sim.follow import Scene, simulate
from detector.sim.plot import PERSON_BGR, ROBOT_BGR


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
