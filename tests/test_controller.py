"""The robot's steering and safety decisions (pure functions and small state machines, no sockets)."""
import math

import pytest

from robot_client.controller import FULL_SPEED_M_S, MOTOR_LAG_S, Camera, Follower, Gains, Steering, clamp, wheel_speeds
from robot_client.freshness import RESYNC_S, Freshness

GAINS = Gains(max_speed=40, distance_m=1.0, turn_gain=30, turn_dead_band=0.1, drive_gain=1.5)
CAMERA = Camera(height_m=0.2, hfov_deg=60, vfov_deg=45)
AT_1M = CAMERA.box_bottom(1.0)  # where the feet of a person 1 m away are, 0.741 of the frame height


def test_person_on_the_right_turns_right():
    left, right = wheel_speeds(0.5, 0.0, GAINS)
    assert left > 0 > right and left == -right == 15.0


def test_person_on_the_left_turns_left():
    left, right = wheel_speeds(-0.5, 0.0, GAINS)
    assert right > 0 > left


def test_dead_band_edges():
    assert wheel_speeds(0.099, 0.0, GAINS) == (0.0, 0.0)
    assert wheel_speeds(0.1, 0.0, GAINS) == (3.0, -3.0)


def test_forward_speed_in_metres_per_second_becomes_percent():
    assert wheel_speeds(0.0, FULL_SPEED_M_S / 10, GAINS) == (10.0, 10.0)
    assert FULL_SPEED_M_S == pytest.approx(0.513, abs=0.001)  # 1050 deg/s on 56 mm wheels


def test_speeds_are_clamped_keeping_the_turn_shape():
    left, right = wheel_speeds(0.2, 1.0, GAINS)  # 195% forward asked, turning 6
    assert max(abs(left), abs(right)) == pytest.approx(40.0)
    assert left > right > 0 and left - right == pytest.approx(40 * 12 / (195 + 6), abs=0.2)
    assert wheel_speeds(5.0, 0.0, GAINS) == wheel_speeds(1.0, 0.0, GAINS)  # offset clamped to [-1, 1]


def test_a_person_at_the_frame_edge_is_turned_to_on_the_spot():
    forward = 0.1  # m/s, 19.5%
    assert wheel_speeds(0.2, forward, GAINS) == (25.5, 13.5)      # near the centre: full forward speed
    left, right = wheel_speeds(0.7, forward, GAINS)               # near the edge: mostly turning
    assert left > 0 > right and left + right == pytest.approx(2 * 1.9, abs=0.2)
    assert wheel_speeds(0.8, forward, GAINS) == (24.0, -24.0)     # at the edge: on the spot


def test_distance_from_the_feet_matches_the_geometry():
    for distance in (0.6, 1.0, 2.0, 3.5):
        assert CAMERA.feet_distance_m(CAMERA.box_bottom(distance)) == pytest.approx(distance)
    # the feet at 0.741 of the frame height: 0.2 m / (0.241 * 2 * tan 22.5 deg) = 1.0 m
    assert AT_1M == pytest.approx(0.5 + 0.2 / (2 * math.tan(math.radians(22.5))), abs=1e-9)


def test_distance_ignores_a_head_cut_off_at_the_top():
    whole = {"y": 0.45, "h": 0.2, "area": 0.02}           # bottom at 0.55: far away, all visible
    cut = {"y": 0.275, "h": 0.55, "area": 0.1}            # same bottom, top at the frame's edge
    assert GAINS.distance_of(whole) == GAINS.distance_of(cut) == pytest.approx(CAMERA.feet_distance_m(0.55))


def test_feet_below_the_frame_mean_closer_than_the_camera_sees_the_floor():
    assert CAMERA.near_m == pytest.approx(0.2 / math.tan(math.radians(22.5)))   # 0.48 m
    assert CAMERA.feet_distance_m(1.0) == CAMERA.feet_distance_m(0.995) == CAMERA.near_m
    assert CAMERA.feet_distance_m(0.5) == CAMERA.feet_distance_m(0.3) == CAMERA.far_m  # at/above the horizon


def test_target_area_still_sets_the_distance_by_area():
    gains = Gains(distance_m=1.2, target_area=0.2)
    assert gains.distance_of({"y": 0.5, "h": 0.5, "area": 0.2}) == pytest.approx(1.2)
    assert gains.distance_of({"y": 0.5, "h": 0.5, "area": 0.05}) == pytest.approx(2.4)  # a quarter: twice as far


def test_bad_settings_are_refused():
    for kwargs, words in (({"max_speed": 150}, "max_speed"), ({"target_area": 0}, "target_area"),
                          ({"distance_m": 0.05}, "distance"), ({"drive_gain": 40}, "no longer a percentage")):
        with pytest.raises(ValueError, match=words):
            Gains(**kwargs)
    with pytest.raises(ValueError, match="camera height"):
        Camera(height_m=-0.2)
    with pytest.raises(ValueError, match="vertical field of view"):
        Camera(vfov_deg=0)


def box_message(t_capture, bottom, offset_x=0.0, age_s=0.05):
    """A person message whose box ends at `bottom` with its top cut off at the frame's edge."""
    return {"found": True, "t_capture": t_capture, "t_publish": t_capture + age_s, "y": bottom / 2,
            "h": bottom, "area": 0.3 * bottom, "offset_x": offset_x, "x": (offset_x + 1) / 2, "w": 0.3}


def test_steering_drives_to_the_distance_and_backs_off_when_too_close():
    steering = Steering(GAINS)
    far = steering.update(box_message(100.0, CAMERA.box_bottom(2.0)), now=5.0)
    assert far[0] == far[1] == pytest.approx(40.0)        # 0.95 m too far: full speed (clamped)
    steering = Steering(GAINS)
    assert steering.update(box_message(100.0, CAMERA.box_bottom(1.02)), now=5.0) == (0.0, 0.0)  # dead band
    steering = Steering(GAINS)
    close = steering.update(box_message(100.0, CAMERA.box_bottom(0.85)), now=5.0)
    assert close[0] == close[1] == pytest.approx(-1.5 * 0.10 / FULL_SPEED_M_S * 100, abs=0.1)  # 0.15 - 0.05 too close


def test_steering_learns_the_walking_speed_and_forgets_it():
    """A wide dead band leaves only the feed-forward: the person walks away at 0.2 m/s, the robot
    drives (the distance seen shrinks by what it drove), and the fitted speed is the person's."""
    steering = Steering(Gains(max_speed=100, distance_dead_band_m=5.0))  # only the feed-forward acts
    for step in range(20):
        t = step / 30.0
        driven = steering._odometer_at(t - MOTOR_LAG_S)[0] if steering.odometer else 0.0  # wheels lag
        seen = 2.0 + 0.2 * t - driven
        speeds = steering.update(box_message(100 + t, CAMERA.box_bottom(seen), age_s=0.0), now=t)
    assert speeds[0] == speeds[1] == pytest.approx(0.2 / FULL_SPEED_M_S * 100, abs=4)
    steering.reset()
    assert steering.update(box_message(101.0, CAMERA.box_bottom(2.0), age_s=0.0), now=1.0) == (0.0, 0.0)


def test_steering_allows_for_its_own_turn_since_the_capture():
    """Turning right at 15% per wheel (1.28 rad/s on a 12 cm track), the wheels MOTOR_LAG_S behind
    the command: a picture 0.3 s old saw the person 16 degrees right, but the robot has turned 22
    degrees since, so the person is now on the left; in a fresh picture, still on the right."""
    for age_s, turning_right in ((0.0, True), (0.3, False)):
        steering = Steering(GAINS)
        assert steering.update(box_message(100.0, AT_1M, offset_x=0.5), now=0.0) == (15.0, -15.0)
        left, right = steering.update(box_message(100.4 - age_s, AT_1M, offset_x=0.5, age_s=age_s), now=0.4)
        assert (left > 0 > right) == turning_right and (right > 0 > left) != turning_right


def test_a_silence_restarts_the_dead_reckoning():
    steering = Steering(GAINS)
    steering.update(box_message(100.0, AT_1M, offset_x=0.5), now=0.0)
    # 0.6 s later (the Follower stopped the motors meanwhile), a 0.3 s old picture: no turn to allow for
    assert steering.update(box_message(100.3, AT_1M, offset_x=0.5, age_s=0.3), now=0.6) == (15.0, -15.0)


def test_a_box_with_nan_is_not_a_person():
    follower = Follower(GAINS, timeout_s=0.5)
    follower.on_person(person(), now=1.0)
    follower.on_person(dict(person(), y=float("nan")), now=1.1)
    assert follower.decide(1.1) == (None, "person lost")


def person(found=True, offset_x=0.5):
    """A message with the person 1 m away (inside the distance dead band): only turning."""
    message = {"found": found, "t_capture": 100.0, "t_publish": 100.05}
    message.update(box_message(100.0, AT_1M, offset_x) if found else dict.fromkeys(("x", "y", "w", "h", "area", "offset_x")))
    return message


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
