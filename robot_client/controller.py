"""Steering from the daemon's `person` messages: the camera's geometry, the control law, and the
Follower's safety decisions.

Speeds are percentages of the motors' maximum (ev3dev2's SpeedPercent), positive forward.
`robot-detector simulate-follow` runs this module in a closed loop; tune it there.
"""
import math

# Forward speed of the robot at SpeedPercent(100): ev3dev's max_speed of an EV3 large motor
# (1050 deg/s) on the 56 mm wheels of the EV3 sets.
FULL_SPEED_M_S = 1050.0 / 360.0 * math.pi * 0.056
TRACK_M = 0.12          # between the wheels' contact points
EDGE = 0.01             # a box edge this close to the frame's border is taken as cut off there
WINDOW_S = 0.6          # the person's speed is fitted over this much of recent history
MIN_FIT_S = 0.25        # ... and only once the history spans this long
MAX_PERSON_SPEED_M_S = 1.0
MOTOR_LAG_S = 0.1       # the wheels follow a new speed command about this much later (speed regulation)
MAX_GAP_S = 0.5         # a longer silence: the Follower has stopped the motors, dead reckoning restarts
TURN_FIRST = (0.25, 0.75)  # forward speed fades out as |offset_x| goes from the first to the second:
                           # a person near the frame's edge is about to be lost, so turn on the spot
STILL_BOX_S = 1.0       # a box exactly equal (x, y, w, h) this long while the wheels turn: stale data
STALE_BOX = "the person's box stayed exactly the same for {:.1f} s while driving: stale data (a frozen camera?)".format(
    STILL_BOX_S)


def clamp(value, low, high):
    if value != value:  # NaN: every comparison is false, so max/min would hand back a bound
        raise ValueError("cannot clamp NaN")
    return max(low, min(high, value))


class Camera(object):
    """A camera looking straight ahead (level) at `height_m` above the floor.

    The distance to a person comes from where their feet are in the picture: the bottom edge of the
    box sits height_m / distance below the horizon (in tangent units). That holds however much of the
    body is cut off at the top of the frame (with a 20 cm high camera, 60 x 45 degrees, the head
    leaves the frame at 3.6 m already) and whatever the person's size.
    """

    def __init__(self, height_m=0.2, hfov_deg=60.0, vfov_deg=45.0):
        if not 0 < height_m < 3:
            raise ValueError("camera height must be in (0, 3) metres, found {}".format(height_m))
        for name, value in (("horizontal", hfov_deg), ("vertical", vfov_deg)):
            if not 1 <= value <= 170:
                raise ValueError("{} field of view must be in [1, 170] degrees, found {}".format(name, value))
        self.height_m = float(height_m)
        self.tan_half_h = math.tan(math.radians(hfov_deg) / 2)
        self.tan_half_v = math.tan(math.radians(vfov_deg) / 2)
        self.near_m = self.height_m / self.tan_half_v  # closer than this, the feet are below the frame
        self.far_m = self.height_m / (self.tan_half_v * 2 * EDGE)  # feet this close to the horizon

    def feet_distance_m(self, box_bottom):
        """Distance (metres, along the camera's axis) to a person whose box ends at `box_bottom`
        (fraction of the frame height from the top)."""
        if box_bottom >= 1 - EDGE:
            return self.near_m  # feet cut off: at most this far, which makes the robot back off
        below_horizon = (2 * box_bottom - 1) * self.tan_half_v
        return self.height_m / below_horizon if below_horizon * self.far_m > self.height_m else self.far_m

    def box_bottom(self, distance_m):
        """Where the feet of a person `distance_m` away appear (fraction of the frame height)."""
        return 0.5 + self.height_m / distance_m / self.tan_half_v / 2


class Gains(object):
    """Controller settings.

    distance_m: how far from the person to stay (metres, to the camera).
    target_area: when given, distance is judged the old way, from the box area: the person is at
        distance_m when their box covers this fraction of the frame (area ~ 1 / distance^2 while
        the box is not cut off). Without it, from the feet (Camera).
    drive_gain: forward speed (m/s) per metre of distance error, on top of the person's own speed.
    distance_dead_band_m: distance error that counts as none (continuous: the band is subtracted).
    turn_gain: wheel-speed difference (percent) per unit of offset_x (offset_x = 1: person at the
        right edge). 30 turns at most 30% on each wheel, gentle enough not to overshoot at
        10-30 messages a second.
    turn_dead_band: |offset_x| below this is "centred" (no turning), so noise does not wiggle.
    max_speed: no wheel goes faster than this percentage, forwards or backwards.
    full_speed_m_s: the robot's forward speed at 100%.
    """

    def __init__(self, max_speed=40.0, distance_m=1.0, target_area=None, camera=None, turn_gain=30.0,
                 turn_dead_band=0.07, drive_gain=1.5, distance_dead_band_m=0.05, full_speed_m_s=FULL_SPEED_M_S,
                 track_m=TRACK_M):
        if not 0 < max_speed <= 100:
            raise ValueError("max_speed must be in (0, 100], found {}".format(max_speed))
        if not 0.2 <= distance_m <= 10:
            raise ValueError("distance must be in [0.2, 10] metres, found {}".format(distance_m))
        if target_area is not None and not 0 < target_area < 1:
            raise ValueError("target_area must be in (0, 1), found {}".format(target_area))
        if not 0 < drive_gain <= 5:
            raise ValueError("drive gain must be in (0, 5] m/s per metre of distance error, found {} "
                             "(it is no longer a percentage)".format(drive_gain))
        self.max_speed = float(max_speed)
        self.distance_m = float(distance_m)
        self.target_area = None if target_area is None else float(target_area)
        self.camera = camera or Camera()
        self.turn_gain = float(turn_gain)
        self.turn_dead_band = float(turn_dead_band)
        self.drive_gain = float(drive_gain)
        self.distance_dead_band_m = float(distance_dead_band_m)
        self.full_speed_m_s = float(full_speed_m_s)
        self.track_m = float(track_m)

    def distance_of(self, message):
        """Metres to the person of a `person` message with found = true."""
        if self.target_area is not None:
            return self.distance_m * math.sqrt(self.target_area / max(message["area"], 1e-6))
        return self.camera.feet_distance_m(message["y"] + message["h"] / 2)


def wheel_speeds(offset_x, drive_m_s, gains):
    """(left, right) wheel speeds in percent: forward at `drive_m_s`, turning towards the person.
    Person on the right (offset_x > 0): the left wheel runs faster."""
    offset = clamp(offset_x, -1.0, 1.0)
    turn = 0.0 if abs(offset) < gains.turn_dead_band else gains.turn_gain * offset
    low, high = TURN_FIRST
    drive = drive_m_s / gains.full_speed_m_s * 100.0 * clamp((high - abs(offset)) / (high - low), 0.0, 1.0)
    left, right = drive + turn, drive - turn
    fastest = max(abs(left), abs(right))
    if fastest > gains.max_speed:  # scale both, so the turn keeps its shape
        left, right = left * gains.max_speed / fastest, right * gains.max_speed / fastest
    return round(left, 1), round(right, 1)


class Steering(object):
    """Turns each `person` message into wheel speeds, keeping the distance while the person walks.

    Forward speed = the person's own speed (feed-forward) + drive_gain x (distance error). Both come
    from a straight-line fit, over the last WINDOW_S, of the person's position along the robot's
    line of travel: distance seen + how far the robot had driven by then, timed by the daemon's
    t_capture. The fit's slope is the person's speed, a measurement that cannot wind up like an
    integral, forgotten when the person is lost; its value smooths the distance.

    A message is t_publish - t_capture old when it arrives. What the robot drove and turned since
    the capture (dead reckoning on its own commands, the wheels MOTOR_LAG_S behind them) is taken
    off the distance and the bearing, so neither loop chases old data: without this the turn loop
    oscillates from about 0.4 s of delay on. The person is not extrapolated over that age: the
    distance this leaves while they walk is what the robot needs to stop short when they stop.
    """

    def __init__(self, gains):
        self.gains = gains
        self.reset()

    def reset(self):
        self.samples = []      # (t_capture, person's position along the robot's travel, metres)
        self.odometer = []     # (brick time, metres driven, radians turned right, speeds from then on)
        self.speeds = (0.0, 0.0)

    def _odometer_at(self, t):
        """(metres driven forward, radians turned right) at brick time `t`, by dead reckoning on
        the commands: (left + right) / 2 forward, (left - right) / track turning."""
        for when, driven, turned, (left, right) in reversed(self.odometer):
            if when <= t:
                break
        full = self.gains.full_speed_m_s / 100.0
        elapsed = max(0.0, t - when)
        return (driven + (left + right) / 2 * full * elapsed,
                turned + (left - right) * full / self.gains.track_m * elapsed)

    def _fit(self):
        """(position now-ish, speed): the person's fitted position along the robot's travel at the
        newest capture, and their speed along it (0 until the history is long enough)."""
        t_last, p_last = self.samples[-1]
        span = t_last - self.samples[0][0]
        if len(self.samples) < 4 or span < MIN_FIT_S:
            return p_last, 0.0
        mean_t = sum(t for t, _ in self.samples) / len(self.samples)
        mean_p = sum(p for _, p in self.samples) / len(self.samples)
        slope = (sum((t - mean_t) * (p - mean_p) for t, p in self.samples)
                 / sum((t - mean_t) ** 2 for t, _ in self.samples))
        speed = clamp(slope, -MAX_PERSON_SPEED_M_S, MAX_PERSON_SPEED_M_S)
        return mean_p + speed * (t_last - mean_t), speed

    def update(self, message, now, forward=True):
        """(left, right) in percent, or None for a message whose numbers are not finite.
        forward=False: turn and back off, but never drive towards the box."""
        gains = self.gains
        if not all(math.isfinite(message[name]) for name in ("t_capture", "t_publish", "y", "h", "area", "offset_x")):
            return None
        if self.odometer and now - self.odometer[-1][0] > MAX_GAP_S:
            self.reset()
        if not self.odometer:
            self.odometer.append((now, 0.0, 0.0, (0.0, 0.0)))
        age_s = clamp(message["t_publish"] - message["t_capture"], 0.0, 1.0)
        driven, turned = self._odometer_at(now - MOTOR_LAG_S)  # where the wheels have got to by now
        driven_then, turned_then = self._odometer_at(now - age_s - MOTOR_LAG_S)  # ... at the capture
        t_capture = message["t_capture"]
        self.samples = [item for item in self.samples if t_capture - WINDOW_S < item[0] < t_capture]
        self.samples.append((t_capture, gains.distance_of(message) + driven_then))
        position_m, person_speed = self._fit()
        error = position_m - driven - gains.distance_m
        error = math.copysign(max(0.0, abs(error) - gains.distance_dead_band_m), error)
        limit = gains.max_speed / 100.0 * gains.full_speed_m_s
        drive_m_s = clamp(person_speed + gains.drive_gain * error, -limit, limit if forward else 0.0)
        # where the person is now, in the picture: the robot has turned since the capture
        bearing = math.atan(clamp(message["offset_x"], -1.0, 1.0) * gains.camera.tan_half_h) - (turned - turned_then)
        offset_now = math.tan(clamp(bearing, -1.5, 1.5)) / gains.camera.tan_half_h
        self.speeds = wheel_speeds(offset_now, drive_m_s, gains)
        self.odometer = [item for item in self.odometer if item[0] > now - 2 * WINDOW_S - MOTOR_LAG_S]
        self.odometer.append((now,) + self._odometer_at(now) + (self.speeds,))
        return self.speeds


class Follower(object):
    """Decides, at any moment, whether to drive and how, from the messages received so far.

    Times are the brick's own time.monotonic() at reception: the PC's clock is not trusted.
    It drives only while messages are fresh (newer than `timeout_s`), the daemon is running, and
    the last message says `found`. The daemon's tracker already holds a briefly unseen person for
    its grace period (`held: true`, or `state: "held"`); a second grace here would add to it, so
    `found: false` stops at once. While the target is held, the box is a prediction and a closer
    person may hide it: no forward drive then, only turning and backing off.

    Defence in depth against a frozen camera the daemon did not notice: no real detector reports a
    box exactly equal (x, y, w, h) in frame after frame; if it stays so for STILL_BOX_S of person
    messages (held ones aside, which repeat a box by design) while the wheels turn, stop, and stay
    stopped until the box moves.
    """

    def __init__(self, gains, timeout_s=0.5):
        self.gains = gains
        self.timeout_s = timeout_s
        self.t_message = None     # when the last valid person message arrived
        self.found = False        # whether that message reported the person
        self.speeds = (0.0, 0.0)
        self.daemon_state = None
        self.steering = Steering(gains)
        self.box = None           # (x, y, w, h) of the latest seen (not held) target ...
        self.box_since = None     # ... and when it first arrived
        self.turning_since = None  # since when the wheels have been told to turn, without a break
        self.stale_box = None     # a box found still while driving: no driving on it again

    def on_person(self, message, now):
        self.t_message = now
        self.found = message["found"]
        held = bool(message.get("held")) or message.get("state") == "held"
        if message["found"]:
            speeds = self.steering.update(message, now, forward=not held)
            if speeds is None:  # a box with NaN or infinite numbers counts as not seen
                self.found = False
            else:
                self.speeds = speeds
            box = tuple(message[name] for name in ("x", "y", "w", "h"))
            if not held and box != self.box:
                self.box, self.box_since = box, now
        else:
            self.steering.reset()  # what was learnt about the person's walk is stale when they reappear
            self.box = self.box_since = None

    def on_status(self, message, now):
        self.daemon_state = message["state"]

    def reset(self):
        """A new daemon run: nothing of the old one's messages counts."""
        self.t_message, self.found, self.daemon_state = None, False, None
        self.box = self.box_since = self.turning_since = self.stale_box = None
        self.steering.reset()

    def decide(self, now, hold=None):
        """((left, right), None) to drive, or (None, reason) to stop. `hold`: a reason from
        elsewhere (the daemon's run or status) not to drive now."""
        speeds, reason = self._decide(now, hold)
        if speeds is None or speeds == (0.0, 0.0):
            self.turning_since = None
        elif self.turning_since is None:
            self.turning_since = now
        return speeds, reason

    def _decide(self, now, hold):
        if self.t_message is None:
            return None, "waiting for the first message"
        if now - self.t_message > self.timeout_s:
            return None, "no fresh message for {:.0f} ms".format((now - self.t_message) * 1000)
        if self.daemon_state in ("stopping", "camera_lost"):
            return None, "daemon is {}".format(self.daemon_state)
        if not self.found:
            return None, "person lost"
        if hold:
            return None, hold
        if self.box is not None and self.box == self.stale_box:
            return None, STALE_BOX
        if self.speeds != (0.0, 0.0) and self.turning_since is not None and self.box_since is not None \
                and now - max(self.box_since, self.turning_since) >= STILL_BOX_S:
            self.stale_box = self.box  # stays stopped until the box moves
            return None, STALE_BOX
        return self.speeds, None
