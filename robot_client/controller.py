"""Steering from the daemon's `person` messages: pure functions and one small state machine.

Speeds are percentages of the motors' maximum (ev3dev2's SpeedPercent), positive forward.
"""


def clamp(value, low, high):
    if value != value:  # NaN: every comparison is false, so max/min would hand back a bound
        raise ValueError("cannot clamp NaN")
    return max(low, min(high, value))


class Gains(object):
    """Controller settings.

    turn_gain: wheel-speed difference (percent) per unit of offset_x (offset_x = 1: person at the
        right edge). 30 turns at most 30% on each wheel, gentle enough not to overshoot at
        10-30 messages a second.
    turn_dead_band: |offset_x| below this is "centred" (no turning), so noise does not wiggle.
    target_area: the person's box area (fraction of the frame) to keep: larger means closer.
    drive_gain: forward speed (percent) per unit of relative area error (target - area) / target:
        a person at half the target area gives drive_gain / 2 forward.
    area_dead_band: relative area error below this is "at the right distance".
    max_speed: no wheel goes faster than this percentage, forwards or backwards.
    """

    def __init__(self, max_speed=40.0, target_area=0.15, turn_gain=30.0, turn_dead_band=0.1,
                 drive_gain=40.0, area_dead_band=0.15):
        if not 0 < max_speed <= 100:
            raise ValueError("max_speed must be in (0, 100], found {}".format(max_speed))
        if not 0 < target_area < 1:
            raise ValueError("target_area must be in (0, 1), found {}".format(target_area))
        self.max_speed = float(max_speed)
        self.target_area = float(target_area)
        self.turn_gain = float(turn_gain)
        self.turn_dead_band = float(turn_dead_band)
        self.drive_gain = float(drive_gain)
        self.area_dead_band = float(area_dead_band)


def wheel_speeds(offset_x, area, gains):
    """(left, right) wheel speeds in percent that turn towards the person and keep its area near
    the target. Person on the right (offset_x > 0): the left wheel runs faster."""
    offset = clamp(offset_x, -1.0, 1.0)
    turn = 0.0 if abs(offset) < gains.turn_dead_band else gains.turn_gain * offset
    error = (gains.target_area - area) / gains.target_area  # > 0: too small, i.e. too far
    drive = 0.0 if abs(error) < gains.area_dead_band else gains.drive_gain * clamp(error, -1.0, 1.0)
    left, right = drive + turn, drive - turn
    fastest = max(abs(left), abs(right))
    if fastest > gains.max_speed:  # scale both, so the turn keeps its shape
        left, right = left * gains.max_speed / fastest, right * gains.max_speed / fastest
    return round(left, 1), round(right, 1)


class Follower(object):
    """Decides, at any moment, whether to drive and how, from the messages received so far.

    Times are the brick's own time.monotonic() at reception: the PC's clock is not trusted.
    It drives only while messages are fresh (newer than `timeout_s`), the daemon is running, and
    the last message says `found`. The daemon's tracker already holds a briefly unseen person for
    its grace period (`track_grace_s`, messages with `held: true`); a second grace here would add
    to it, so `found: false` stops at once.
    """

    def __init__(self, gains, timeout_s=0.5):
        self.gains = gains
        self.timeout_s = timeout_s
        self.t_message = None     # when the last valid person message arrived
        self.found = False        # whether that message reported the person
        self.speeds = (0.0, 0.0)
        self.daemon_state = None

    def on_person(self, message, now):
        self.t_message = now
        self.found = message["found"]
        if message["found"]:
            self.speeds = wheel_speeds(message["offset_x"], message["area"], self.gains)
        if self.daemon_state in ("stopping", "camera_lost"):
            self.daemon_state = "running"  # frames flow again (e.g. the daemon restarted)

    def on_status(self, message, now):
        self.daemon_state = message["state"]

    def decide(self, now):
        """((left, right), None) to drive, or (None, reason) to stop."""
        if self.t_message is None:
            return None, "waiting for the first message"
        if now - self.t_message > self.timeout_s:
            return None, "no fresh message for {:.0f} ms".format((now - self.t_message) * 1000)
        if self.daemon_state in ("stopping", "camera_lost"):
            return None, "daemon is {}".format(self.daemon_state)
        if not self.found:
            return None, "person lost"
        return self.speeds, None
