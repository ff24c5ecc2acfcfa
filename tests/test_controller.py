"""The robot's steering and safety decisions (pure functions, no sockets)."""
import pytest

from robot_client.controller import Follower, Gains, clamp, wheel_speeds
from robot_client.freshness import RESYNC_S, Freshness

GAINS = Gains(max_speed=40, target_area=0.15, turn_gain=30, turn_dead_band=0.1, drive_gain=40, area_dead_band=0.15)


def test_person_on_the_right_turns_right():
    left, right = wheel_speeds(0.5, 0.15, GAINS)
    assert left > 0 > right and left == -right == 15.0


def test_person_on_the_left_turns_left():
    left, right = wheel_speeds(-0.5, 0.15, GAINS)
    assert right > 0 > left


def test_centred_at_the_right_distance_stands_still():
    assert wheel_speeds(0.05, 0.16, GAINS) == (0.0, 0.0)  # both inside their dead bands


def test_dead_band_edges():
    assert wheel_speeds(0.099, 0.15, GAINS) == (0.0, 0.0)
    assert wheel_speeds(0.1, 0.15, GAINS) == (3.0, -3.0)


def test_too_far_drives_forward_too_close_backs_off():
    forward = wheel_speeds(0.0, 0.075, GAINS)  # half the target area
    assert forward == (20.0, 20.0)
    back = wheel_speeds(0.0, 0.3, GAINS)       # twice the target area
    assert back[0] == back[1] < 0


def test_speeds_are_clamped_keeping_the_turn_shape():
    left, right = wheel_speeds(1.0, 0.01, GAINS)  # far away and at the edge: 38 + 30 and 38 - 30 unclamped
    assert max(abs(left), abs(right)) == pytest.approx(40.0)
    assert left > right > 0
    assert wheel_speeds(5.0, 0.15, GAINS) == wheel_speeds(1.0, 0.15, GAINS)  # offset clamped to [-1, 1]


def test_bad_gains_are_refused():
    with pytest.raises(ValueError, match="max_speed"):
        Gains(max_speed=150)
    with pytest.raises(ValueError, match="target_area"):
        Gains(target_area=0)


def person(found=True, offset_x=0.5, area=0.15):
    return {"found": found, "offset_x": offset_x if found else None, "area": area if found else None}


def test_follower_drives_only_on_fresh_data():
    follower = Follower(GAINS, timeout_s=0.5)
    assert follower.decide(0.0) == (None, "waiting for the first message")
    follower.on_person(person(), now=1.0)
    assert follower.decide(1.2) == ((15.0, -15.0), None)
    speeds, reason = follower.decide(1.51)
    assert speeds is None and reason.startswith("no fresh message")


def test_follower_stops_when_the_person_is_lost():
    """One grace, the daemon's: a held box (not seen, within track_grace_s) still drives;
    the first found: false stops at once, adding no grace of the client's own."""
    follower = Follower(GAINS, timeout_s=0.5)
    follower.on_person(person(), now=1.0)
    follower.on_person(dict(person(), held=True), now=1.1)
    assert follower.decide(1.15)[0] is not None
    follower.on_person(person(found=False), now=1.2)
    assert follower.decide(1.2) == (None, "person lost")


def test_follower_stops_on_daemon_stopping_or_camera_lost():
    for state in ("stopping", "camera_lost"):
        follower = Follower(GAINS)
        follower.on_person(person(), now=1.0)
        follower.on_status({"state": state}, now=1.01)
        assert follower.decide(1.02) == (None, "daemon is " + state)
        follower.on_person(person(), now=1.1)  # frames flow again
        assert follower.decide(1.1)[0] is not None


def test_clamp_refuses_nan_instead_of_returning_a_bound():
    with pytest.raises(ValueError, match="NaN"):
        clamp(float("nan"), -1.0, 1.0)
    assert clamp(float("inf"), -1.0, 1.0) == 1.0  # infinities are ordered; the protocol refuses them earlier


def published(seq, t_publish):
    return {"seq": seq, "t_publish": t_publish}


def test_freshness_learns_the_link_delay_and_refuses_a_backlog():
    # PC clock and brick clock differ by 1000 s; each is only compared with itself
    fresh = Freshness(max_lag_s=0.5)
    assert fresh.judge(published(0, 5000.0), t_arrival=4000.10) is None
    assert fresh.judge(published(1, 5000.1), t_arrival=4000.18) is None  # a faster transit: the new baseline
    assert fresh.judge(published(2, 5000.2), t_arrival=4000.60) is None  # 0.32 s late: jitter, still fresh
    assert "backlog" in fresh.judge(published(3, 5000.3), t_arrival=4001.00)  # 0.62 s late
    assert fresh.judge(published(4, 5001.3), t_arrival=4001.40) is None  # the backlog has drained


def test_freshness_follows_restarts_clock_steps_and_drift():
    fresh = Freshness(max_lag_s=0.5)
    assert fresh.judge(published(10, 100.0), 0.0) is None
    assert "old message" in fresh.judge(published(10, 100.0), 0.05)  # the same message again
    assert "old message" in fresh.judge(published(3, 99.0), 0.1)     # published before the newest
    assert fresh.judge(published(0, 100.5), 0.5) is None               # the daemon restarted: seq from 0
    assert fresh.judge(published(1, 40.0), 0.6) is None                # PC clock stepped back, seq went on
    assert fresh.judge(published(2, 40.1), 0.7) is None
    # drift: the link's delay creeps up by 1 ms per second (within DRIFT_PER_S) for 10 minutes
    for k in range(1, 601):
        assert fresh.judge(published(2 + k, 40.1 + k), 0.7 + k * 1.001) is None
    # the daemon restarts on a clock stepped back by an hour: refused as old, then taken after RESYNC_S
    assert "old message" in fresh.judge(published(0, 40.0 - 3600), 602.0)
    assert fresh.judge(published(5, 40.0 - 3600 + 5.0), 602.0 + RESYNC_S) is None
    assert fresh.judge(published(6, 40.0 - 3600 + 5.1), 602.1 + RESYNC_S) is None
