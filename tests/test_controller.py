"""The robot's steering and safety decisions (pure functions and small state machines, no sockets)."""
import math

import pytest

from robot_client.controller import (FULL_SPEED_M_S, MOTOR_LAG_S, STILL_BOX_S, Camera, Follower, Gains, Steering, clamp,
                                     wheel_speeds)
from robot_client.daemon_run import IGNORE, NEW, SAME, DaemonRun
from robot_client.freshness import MAX_RISE_PER_S, Freshness
from robot_client.target import TargetWatch

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
    """Only a status says the daemon runs again: a person message published before `stopping`
    or `camera_lost` may be delivered after it (two sockets), and must not restart the wheels."""
    for state in ("stopping", "camera_lost"):
        follower = Follower(GAINS)
        follower.on_person(person(), now=1.0)
        follower.on_status({"state": state}, now=1.01)
        assert follower.decide(1.02) == (None, "daemon is " + state)
        follower.on_person(person(), now=1.1)
        assert follower.decide(1.1) == (None, "daemon is " + state)
        follower.on_status({"state": "running"}, now=1.15)  # frames flow again
        assert follower.decide(1.15)[0] is not None


def test_held_target_is_turned_to_but_never_driven_towards():
    """Held: the box is the tracker's prediction, maybe behind a closer person: no forward drive."""
    far = dict(box_message(100.0, CAMERA.box_bottom(2.0)), offset_x=0.0, x=0.5)
    for held in ({"held": True}, {"state": "held"}):
        follower = Follower(GAINS)
        follower.on_person(far, now=1.0)
        assert follower.decide(1.0)[0] == (40.0, 40.0)  # seen 2 m away: full speed ahead
        follower.on_person(dict(far, t_capture=100.03, t_publish=100.08, **held), now=1.03)
        speeds, _ = follower.decide(1.03)
        assert speeds == (0.0, 0.0)
        follower.on_person(dict(far, t_capture=100.06, t_publish=100.11, offset_x=0.5, x=0.75, **held), now=1.06)
        left, right = follower.decide(1.06)[0]
        assert left > 0 > right and left + right <= 0  # turns towards it, on the spot


def still_box_person(t, jitter):
    message = dict(box_message(100.0 + t, CAMERA.box_bottom(1.5), offset_x=0.3), x=0.65)
    message["x"] += jitter
    return message


def test_a_box_that_never_moves_while_driving_is_stale_data():
    """A frozen camera the daemon did not notice: the same box, frame after frame, while the
    robot drives towards it. A real detector's box jitters: that keeps driving."""
    frozen, alive = Follower(GAINS), Follower(GAINS)
    t = 0.0
    while t < STILL_BOX_S + 0.2:
        frozen.on_person(still_box_person(t, 0.0), now=t)
        alive.on_person(still_box_person(t, 1e-6 * (int(t * 30) % 2)), now=t)
        assert alive.decide(t)[0] is not None
        if t < STILL_BOX_S - 0.05:
            assert frozen.decide(t)[0] is not None, t
        t += 1 / 30
    speeds, reason = frozen.decide(t)
    assert speeds is None and "stale data" in reason
    for k in range(15):  # stays stopped while the box does not move
        t += 1 / 30
        frozen.on_person(still_box_person(t, 0.0), now=t)
        assert frozen.decide(t)[1] == reason
    frozen.on_person(still_box_person(t, 0.001), now=t)  # it moved after all
    assert frozen.decide(t)[0] is not None
    # the still-box clock runs only while the wheels turn: held back by the daemon's status, the
    # box may sit still; driving then starts a full STILL_BOX_S
    waiting = Follower(GAINS)
    for k in range(60):
        waiting.on_person(still_box_person(k / 30, 0.0), now=k / 30)
        assert waiting.decide(k / 30, hold="waiting for the daemon's status")[0] is None
    for k in range(60, 60 + int(STILL_BOX_S * 30) - 2):
        waiting.on_person(still_box_person(k / 30, 0.0), now=k / 30)
        assert waiting.decide(k / 30)[0] is not None, k
    # held messages repeat the box by design (the daemon's grace, under a second): not stale data
    held = Follower(GAINS)
    for k in range(30):
        held.on_person(still_box_person(k / 30, 1e-6 * (k % 2)), now=k / 30)
    for k in range(30, 50):
        held.on_person(dict(still_box_person(k / 30, 0.0), held=True), now=k / 30)
        speeds, reason = held.decide(k / 30)
        assert reason is None and speeds[0] > 0 > speeds[1], (k, reason)  # turning towards it, no forward


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
    assert fresh.judge(published(0, 100.5), 0.5) is None               # the daemon restarted: seq from 0
    assert fresh.judge(published(1, 40.0), 0.6) is None                # PC clock stepped back, seq went on
    assert fresh.judge(published(2, 40.1), 0.7) is None
    # drift: the link's delay creeps up by 1 ms per second for 10 minutes
    for k in range(1, 601):
        assert fresh.judge(published(2 + k, 40.1 + k), 0.7 + k * 1.001) is None
    # the daemon restarts on a clock stepped back by an hour: the new run starts a new baseline
    assert fresh.judge(published(0, 40.0 - 3600), 602.0) is None
    assert fresh.judge(published(1, 40.0 - 3600 + 0.1), 602.1) is None


@pytest.mark.parametrize("back_s", [0.6, 1.0, 2.0])
def test_freshness_restart_with_the_clock_back_is_taken_at_once(back_s):
    """Issue 17 item 3: a restart with the PC's clock `back_s` behind cost 47 to 746 s of refusals."""
    fresh = Freshness(max_lag_s=0.5)
    for seq in range(300):  # the old daemon, 10 s at 30 Hz
        assert fresh.judge(published(seq, 1000.0 + seq / 30), 50.0 + seq / 30 + 0.02) is None
    restart = 50.0 + 300 / 30 + 1.0  # a second later the new daemon publishes, its clock back_s behind
    for seq in range(60):
        t_publish = 1000.0 + 300 / 30 + 1.0 - back_s + seq / 30
        assert fresh.judge(published(seq, t_publish), restart + seq / 30 + 0.02) is None, seq


@pytest.mark.parametrize("rate_ppm", [500, 83333])
def test_freshness_follows_a_backward_slew(rate_ppm):
    """ntpd slews at most 500 ppm, chrony at its default maxslewrate 83333 ppm: the PC's clock runs
    slow by that much; a 0.9 s correction at chrony's rate takes 10.8 s. Never refused."""
    fresh = Freshness(max_lag_s=0.5)
    t_publish, t_arrival = 1000.0, 5.0
    for seq in range(int(0.9 / (rate_ppm * 1e-6) * 30) + 300):
        slewing = seq >= 300 and (seq - 300) / 30 * rate_ppm * 1e-6 < 0.9
        assert fresh.judge(published(seq, t_publish), t_arrival) is None, seq
        t_arrival += 1 / 30
        t_publish += 1 / 30 * (1 - rate_ppm * 1e-6 if slewing else 1)
        if seq > 300 + 30 * 60:
            break  # ntpd's 0.9 s would take 30 minutes: one minute of it shows the same
    assert MAX_RISE_PER_S * 1e6 > 83333


def test_freshness_still_refuses_a_backlog_after_a_stall():
    fresh = Freshness(max_lag_s=0.5)
    for seq in range(30):
        assert fresh.judge(published(seq, 100.0 + seq / 30), 5.0 + seq / 30) is None
    # 1.5 s of silence, then what was published in the first 0.5 s of it arrives at once
    for k in range(15):
        assert "backlog" in fresh.judge(published(30 + k, 101.0 + k / 30), 5.0 + 1.0 + 1.5 + 0.001 * k)
    assert fresh.judge(published(60, 102.5), 7.52) is None  # current again


def status(run_id=None, state="running", demo=False, live=None):
    message = {"state": state, "demo": demo}
    if run_id is not None:
        message["run_id"] = run_id
    if live is not None:
        message["live"] = live
    return message


def numbered(seq, run_id=None):
    return {"seq": seq, "run_id": run_id} if run_id else {"seq": seq}


def test_daemon_run_with_run_ids_needs_a_status_of_each_run():
    run = DaemonRun(timeout_s=0.5)
    assert run.on_person(numbered(0, "a"), 0.0) == NEW and run.hold(0.0) == "waiting for the daemon's status"
    assert run.on_status(status("a"), 0.01) == SAME and run.hold(0.01) is None
    assert run.on_person(numbered(1, "a"), 5.0) == SAME and run.hold(5.0) is None  # silence: same run_id, same run
    # item 4: `stopping` overtakes a person message of the same run; that one is ignored
    assert run.on_status(status("a", "stopping"), 5.1) == SAME and run.hold(5.1) == "daemon is stopping"
    assert run.on_person(numbered(2, "a"), 5.11) == IGNORE
    # item 1: a demo daemon takes the port; its person messages come before its status
    assert run.on_person(numbered(0, "b"), 5.5) == NEW and "waiting" in run.hold(5.5)
    assert run.on_person(numbered(1, "b"), 5.53) == SAME and "waiting" in run.hold(5.53)
    assert run.on_status(status("b", demo=True, live=False), 5.6) == SAME and "--demo" in run.hold(5.6)
    # a daemon replaced without `stopping` (killed): its late messages are ignored too
    assert run.on_status(status("c", live=True), 6.0) == NEW and run.hold(6.0) is None
    assert run.on_person(numbered(9, "b"), 6.01) == IGNORE and run.on_status(status("b"), 6.02) == IGNORE
    assert run.hold(6.02) is None
    recorded = DaemonRun(0.5)
    recorded.on_status(status("d", live=False), 0.0)
    assert "recording" in recorded.hold(0.0)
    assert DaemonRun(0.5, allow_recorded=True).on_status(status("d", live=False), 0.0) == NEW


def test_daemon_run_without_run_ids_tells_restarts_by_seq_stopping_and_silence():
    run = DaemonRun(timeout_s=0.5)
    run.on_status(status(), 0.0)
    assert run.on_person(numbered(100), 0.05) == SAME and run.hold(0.05) is None  # no live field: live
    assert run.on_person(numbered(3), 0.1) == NEW and run.hold(0.1) is not None  # seq went back
    run.on_status(status(), 0.2)
    assert run.on_person(numbered(4), 0.25) == SAME and run.hold(0.25) is None
    # silent longer than the timeout: maybe a restart, so a status is needed again; the link's
    # delay is kept (SAME), so that a backlog after a stall still shows
    assert run.hold(0.8) is not None and run.on_person(numbered(5), 0.8) == SAME and run.hold(0.8) is not None
    run.on_status(status(), 0.85)
    assert run.hold(0.85) is None
    run.on_status(status(state="stopping"), 0.9)
    assert run.on_person(numbered(6), 0.91) == IGNORE  # published before stopping
    assert run.on_status(status(), 1.0) == NEW and run.hold(1.0) is None  # a status after stopping: a new daemon
    assert run.on_person(numbered(0), 1.01) == SAME
    demo = DaemonRun(0.5)
    demo.on_status(status(demo=True), 0.0)
    assert "--demo" in demo.hold(0.0)


class Lines:
    def __init__(self):
        self.lines = []

    def info(self, text, *args):
        self.lines.append(text % args)

    warning = info


class Beeps:
    def __init__(self):
        self.played = []

    def play(self, event):
        self.played.append(event)


def test_target_watch_logs_and_beeps_lost_reacquired_changed():
    log, beeps = Lines(), Beeps()
    watch = TargetWatch(log, beeps)
    for message in ({"found": False, "state": "lost", "track_id": None}, {"found": True, "state": "tracking", "track_id": 1},
                    {"found": True, "state": "held", "track_id": 1}, {"found": True, "state": "tracking", "track_id": 1},
                    {"found": False, "state": "lost", "track_id": None}, {"found": True, "state": "tracking", "track_id": 1},
                    {"found": True, "state": "tracking", "track_id": 4}, {"found": False, "state": "lost"},
                    {"found": True, "state": "tracking", "track_id": 7}):
        watch.on_person(message)
    assert beeps.played == ["reacquired", "lost", "reacquired", "changed", "lost", "changed"]
    assert "target held (track 1)" in log.lines and "target changed from track 1 to track 4" in log.lines
    old = TargetWatch(Lines(), Beeps())  # an older daemon: no state, no track_id
    for message in ({"found": True}, {"found": True, "held": True}, {"found": False}, {"found": True}):
        old.on_person(message)
    assert old.beeper.played == ["reacquired", "lost", "reacquired"]
