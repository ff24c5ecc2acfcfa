"""The robot's steering and safety decisions (pure functions, no sockets)."""
import pytest

from robot_client.controller import Follower, Gains, wheel_speeds

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
