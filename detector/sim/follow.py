"""`robot-detector simulate-follow`: the robot client's controller in a closed loop with a simulated
EV3 robot, its camera and a walking person, in simulated time (no sleeping, deterministic).

The world: a differential-drive robot (two EV3 large motors, speed-regulated with a first-order lag),
a pinhole camera on it looking straight ahead, a person (a 1.7 m x 0.45 m upright box, feet on the
floor) walking a path, and with `path="cross"` a second person crossing between the robot and the
followed one. Each camera frame's detections (the visible part of each box, i.e. clipped to the
frame, with a little edge noise; none for a person mostly hidden behind a nearer one, or missed at
random) go through the daemon's own tracker, and its target becomes the `person` message the daemon
would publish, delivered after a capture-to-robot delay to the real `robot_client` Follower, built
from robot-client options.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from robot_client import protocol
from robot_client.client import build_follower, parse_args

from ..daemon.service import person_message as daemon_person_message
from ..daemon.tracker import PersonTracker
from ..errors import EX_CONFIG, UserError
from ..model.decode import Detection

EPOCH = 1.8e9        # Unix-looking capture times: the client must not depend on the PC's clock
NETWORK_S = 0.02     # of the delay, the part after publishing (Wi-Fi and ssh)
FRAME_SIZE = (640, 480)  # pixels; only the messages' frame_w and frame_h
HIDDEN_FRACTION = 0.5  # a person whose box a nearer person's box covers this much is not detected
PATHS = ("arcs", "stand", "cross")


@dataclass(frozen=True)
class Scene:
    """Everything about the simulated world, in metres, seconds and degrees."""
    delay_s: float = 0.1            # capture -> robot
    rate_hz: float = 30.0           # person messages per second
    noise: float = 0.01             # std of each box edge, fraction of the frame (detector jitter)
    seed: int = 1
    camera_height_m: float = 0.2    # lens above the floor
    hfov_deg: float = 60.0          # field of view, across
    vfov_deg: float = 45.0          # and up and down
    person_height_m: float = 1.7
    person_width_m: float = 0.45
    path: str = "arcs"              # "arcs": straight, left arc, right arc, straight, stand; "stand";
                                    # "cross": straight while another person crosses, then stand
    walk_speed_m_s: float = 0.2     # while walking the path
    arc_radius_m: float = 1.5
    arc_deg: float = 90.0
    straight_s: float = 2.0
    stand_s: float = 8.0
    start_distance_m: float = 1.0
    miss: float = 0.0               # share of detections the detector misses, at random
    crosser_speed_m_s: float = 1.0  # "cross": the other person's walking speed, right to left
    crosser_at_s: float = 3.0       # "cross": when the other person crosses the followed one's line
    crosser_gap_m: float = 0.5      # "cross": how far in front of the followed person they cross
    wheel_radius_m: float = 0.028   # EV3 education wheel, 56 mm
    track_m: float = 0.12
    motor_max_deg_s: float = 1050.0  # ev3dev's max_speed of a large motor: SpeedPercent(100)
    motor_tau_s: float = 0.1        # speed regulation's time constant
    step_s: float = 0.01
    distance_m: float = 1.0         # what the robot is asked to keep
    max_speed: float = 60.0         # percent
    client_options: tuple = ()      # further robot-client options, e.g. ("--turn-gain=20",)

    def __post_init__(self):
        if self.path not in PATHS:
            raise UserError(f"path must be one of {', '.join(PATHS)}, found {self.path!r}", EX_CONFIG)
        if not 0 <= self.miss < 1:
            raise UserError(f"miss must be in [0, 1), found {self.miss}", EX_CONFIG)
        if self.straight_s < 0 or self.arc_deg > 360:
            raise UserError(f"straight_s must be >= 0 and arc_deg at most 360, found {self.straight_s} "
                            f"and {self.arc_deg}", EX_CONFIG)

    def client_argv(self) -> list:
        return ["--distance", str(self.distance_m), "--max-speed", str(self.max_speed),
                "--camera-height", str(self.camera_height_m), "--hfov", str(self.hfov_deg),
                "--vfov", str(self.vfov_deg), *(self.client_options or ())]


def person_segments(scene: Scene) -> list:
    """[(duration_s, speed_m_s, turn_rad_s)]: the person's walk, then standing."""
    speed = scene.walk_speed_m_s
    if scene.path == "stand":
        return [(scene.stand_s, 0.0, 0.0)]
    if scene.path == "cross":
        return [(scene.crosser_at_s + scene.straight_s, speed, 0.0), (scene.stand_s, 0.0, 0.0)]
    turn = speed / scene.arc_radius_m
    arc_s = math.radians(scene.arc_deg) / turn if turn else 0.0
    return [(scene.straight_s, speed, 0.0), (arc_s, speed, turn), (arc_s, speed, -turn),
            (scene.straight_s, speed, 0.0), (scene.stand_s, 0.0, 0.0)]


class Person:
    """Walks `segments` from (x, y) with `heading` (radians; the robot starts at the origin looking
    along +x)."""

    def __init__(self, segments: list, x: float, y: float, heading: float):
        self.segments = segments
        self.x, self.y, self.heading = x, y, heading
        self.stop_time_s = sum(d for d, speed, _ in self.segments if speed > 0)
        self.duration_s = sum(d for d, _, _ in self.segments)

    def step(self, t: float, dt: float) -> None:
        start = 0.0
        for duration, speed, turn in self.segments:
            if t < start + duration:
                self.heading += turn * dt
                self.x += speed * math.cos(self.heading) * dt
                self.y += speed * math.sin(self.heading) * dt
                return
            start += duration


def followed_person(scene: Scene) -> Person:
    """Walks the scene's path from `start_distance_m` straight ahead of the robot, away from it."""
    return Person(person_segments(scene), scene.start_distance_m, 0.0, 0.0)


def crossing_person(scene: Scene) -> Person:
    """"cross": walks from the robot's right to its left (as it starts out looking), reaching the
    followed person's line at `crosser_at_s`, `crosser_gap_m` in front of where that one is then,
    and stands as far to the left as it started to the right."""
    x = scene.start_distance_m + scene.walk_speed_m_s * scene.crosser_at_s - scene.crosser_gap_m
    rest_s = sum(d for d, _, _ in person_segments(scene)) - 2 * scene.crosser_at_s
    return Person([(2 * scene.crosser_at_s, scene.crosser_speed_m_s, 0.0), (max(0.0, rest_s), 0.0, 0.0)],
                  x, -scene.crosser_speed_m_s * scene.crosser_at_s, math.pi / 2)


class Robot:
    """Differential drive; wheel speeds follow the commanded speed_sp with a first-order lag."""

    def __init__(self, scene: Scene):
        self.scene = scene
        self.x = self.y = self.heading = 0.0
        self.wheel_deg_s = [0.0, 0.0]

    def step(self, command, dt: float) -> None:
        scene = self.scene
        # ev3dev2: SpeedPercent(p) -> speed_sp = p / 100 * max_speed, in whole degrees per second
        targets = (0.0, 0.0) if command is None else [round(p / 100.0 * scene.motor_max_deg_s) for p in command]
        blend = 1.0 - math.exp(-dt / scene.motor_tau_s)
        self.wheel_deg_s = [w + (target - w) * blend for w, target in zip(self.wheel_deg_s, targets)]
        left, right = (math.radians(w) * scene.wheel_radius_m for w in self.wheel_deg_s)
        speed, turn = (left + right) / 2, (right - left) / scene.track_m  # turn > 0: to the left
        self.heading += turn * dt
        self.x += speed * math.cos(self.heading) * dt
        self.y += speed * math.sin(self.heading) * dt


def person_in_camera(scene: Scene, robot: Robot, person: Person):
    """(forward_m, right_m): the person's centre in the camera's frame."""
    dx, dy = person.x - robot.x, person.y - robot.y
    cos, sin = math.cos(robot.heading), math.sin(robot.heading)
    return cos * dx + sin * dy, sin * dx - cos * dy


def visible_box(scene: Scene, forward_m: float, right_m: float, rng: random.Random):
    """(x, y, w, h) of the person's visible part as fractions of the frame, or None when the
    detector would not see a person (behind the camera, or less than half of the width in view)."""
    if forward_m < 0.05:
        return None
    fx = 0.5 / math.tan(math.radians(scene.hfov_deg) / 2)  # frame widths per unit of tangent
    fy = 0.5 / math.tan(math.radians(scene.vfov_deg) / 2)
    centre = 0.5 + fx * right_m / forward_m
    half = fx * scene.person_width_m / 2 / forward_m
    edges = [centre - half, centre + half,
             0.5 - fy * (scene.person_height_m - scene.camera_height_m) / forward_m,  # head
             0.5 + fy * scene.camera_height_m / forward_m]                              # feet
    left, right, top, bottom = (min(1.0, max(0.0, e + rng.gauss(0.0, scene.noise))) for e in edges)
    if right - left < half or bottom - top < 0.05:
        return None
    return (left + right) / 2, (top + bottom) / 2, right - left, bottom - top


def detected(scene: Scene, robot: Robot, people: list, rng: random.Random) -> list:
    """[(index in `people`, Detection)]: what the detector reports in this frame. A person mostly
    behind a nearer one's box is not reported (hidden, as NMS would also drop them); with
    `scene.miss`, a detection is missed at random."""
    seen = []
    for index, person in enumerate(people):
        forward, right = person_in_camera(scene, robot, person)
        box = visible_box(scene, forward, right, rng)
        if box is not None:
            seen.append((forward, index, box))
    found = []
    for forward, index, box in seen:
        hidden = any(covered(box, nearer) >= HIDDEN_FRACTION for nearer_forward, _, nearer in seen
                     if nearer_forward < forward)
        if not hidden and not (scene.miss and rng.random() < scene.miss):
            found.append((index, Detection("person", 14, 0.8, *box)))
    return found


def covered(box, by) -> float:
    """The share of `box`'s area that `by` covers; boxes are (x, y, w, h)."""
    overlap_w = min(box[0] + box[2] / 2, by[0] + by[2] / 2) - max(box[0] - box[2] / 2, by[0] - by[2] / 2)
    overlap_h = min(box[1] + box[3] / 2, by[1] + by[3] / 2) - max(box[1] - box[3] / 2, by[1] - by[3] / 2)
    return max(0.0, overlap_w) * max(0.0, overlap_h) / (box[2] * box[3])


def person_message(seq: int, t_capture: float, delay_s: float, target) -> bytes:
    """The daemon's `person` message for the tracker's target, as it publishes it."""
    message = daemon_person_message(seq, t_capture, FRAME_SIZE, t_capture + delay_s - NETWORK_S, target)
    return protocol.encode(protocol.PERSON, message)


def status_message(t: float, scene: Scene) -> bytes:
    latency_ms = (scene.delay_s - NETWORK_S) * 1000
    return protocol.encode(protocol.STATUS, {
        "v": 1, "t": t, "state": "running", "fps": scene.rate_hz, "latency_ms": {"p50": latency_ms, "p95": latency_ms},
        "frames": 0, "dropped": 0, "engine": "simulated", "device": "cpu", "demo": False})


@dataclass
class Run:
    """The recorded run: one sample per simulation step, and the figures computed from them."""
    scene: Scene
    stop_time_s: float
    t: list = field(default_factory=list)
    person_xy: list = field(default_factory=list)
    robot_xy: list = field(default_factory=list)
    distance_m: list = field(default_factory=list)
    bearing_deg: list = field(default_factory=list)
    turn: list = field(default_factory=list)       # commanded left - right wheel speed, percent
    crosser_xy: list = field(default_factory=list)          # "cross" only, as the rest
    crosser_distance_m: list = field(default_factory=list)  # robot centre to the crosser's
    frames: int = 0
    frames_seen: int = 0                # frames in which the followed person was detected
    frames_following: dict = field(default_factory=dict)  # index of the person followed (None: nobody) -> frames

    def figures(self) -> dict:
        scene = self.scene
        walking = [i for i, t in enumerate(self.t) if t < self.stop_time_s]
        after = [i for i, t in enumerate(self.t) if t >= self.stop_time_s]
        error = [d - scene.distance_m for d in self.distance_m]

        def rms(values):
            return math.sqrt(sum(v * v for v in values) / len(values)) if values else None

        settled_at = None
        for i in after:  # the last time the error was out of the 0.1 m band, after the stop
            if abs(error[i]) > 0.1:
                settled_at = None
            elif settled_at is None:
                settled_at = self.t[i]
        # past the set distance: towards the person when following or approaching from further away,
        # away from them when backing off from closer
        side = -1.0 if scene.path == "stand" and scene.start_distance_m < scene.distance_m else 1.0
        reversals, last_sign = 0, 0
        for turn in self.turn:
            sign = (turn > 0) - (turn < 0)
            if sign and last_sign and sign != last_sign:
                reversals += 1
            last_sign = sign or last_sign
        late = [abs(error[i]) for i in after if self.t[i] >= self.stop_time_s + 4.0]
        return {
            "rms_bearing_deg_walking": rms([self.bearing_deg[i] for i in walking]),
            "rms_distance_error_m_walking": rms([error[i] for i in walking]),
            "mean_distance_error_m_walking": (sum(error[i] for i in walking) / len(walking)) if walking else None,
            "time_in_view": self.frames_seen / self.frames if self.frames else 0.0,
            "settling_s": None if settled_at is None else settled_at - self.stop_time_s,
            "overshoot_m": max([0.0] + [-side * error[i] for i in after]),
            "error_4s_after_stop_m": max(late) if late else None,
            "turn_reversals_per_s": reversals / self.t[-1],
            "min_distance_m": min(self.distance_m),
            **({} if not self.crosser_xy else {
                "following_person": self.frames_following.get(0, 0) / self.frames,
                "following_crosser": self.frames_following.get(1, 0) / self.frames,
                "min_distance_to_crosser_m": min(self.crosser_distance_m)}),
        }


def client_follower(scene: Scene):
    """The Follower robot-client builds from scene.client_argv(); bad options are a UserError."""
    try:
        return build_follower(parse_args(scene.client_argv()))
    except SystemExit:  # argparse has printed what it did not accept
        raise UserError(f"robot-client did not accept the options {' '.join(scene.client_argv())}", EX_CONFIG) from None
    except ValueError as error:
        raise UserError(f"robot-client options: {error}", EX_CONFIG) from None


def simulate(scene: Scene, follower=None, tracker=None) -> Run:
    """Run the scene to its end with `follower` (default: the robot client's, from the scene's
    options) and `tracker` (default: the daemon's, with its defaults and no appearance: there are no
    pictures), and return the recorded Run."""
    follower = follower or client_follower(scene)
    tracker = tracker or PersonTracker(appearance=False)
    rng = random.Random(scene.seed)
    person, robot = followed_person(scene), Robot(scene)
    people = [person, crossing_person(scene)] if scene.path == "cross" else [person]
    run = Run(scene, person.stop_time_s)
    in_flight = []  # (delivery time, frame), oldest first
    whose_track = {}  # track id -> index in `people` of the person whose detection it took last
    frame_s, next_frame, next_status = 1.0 / scene.rate_hz, 0.0, 0.0
    steps = int(round(person.duration_s / scene.step_s))
    target_of = None  # index in `people` of the followed track's person, None while nobody is followed
    for step in range(steps + 1):
        t = step * scene.step_s
        if t >= next_frame - 1e-9:
            found = detected(scene, robot, people, rng)
            tracked = tracker.update(t, [detection for _, detection in found])
            whose_track.update((track_id, index) for (index, _), track_id in zip(found, tracked.track_ids))
            target_of = whose_track.get(tracked.target.track_id) if tracked.target.found else None
            in_flight.append((t + scene.delay_s, person_message(run.frames, EPOCH + t, scene.delay_s, tracked.target)))
            run.frames += 1
            run.frames_seen += any(index == 0 for index, _ in found)
            run.frames_following[target_of] = run.frames_following.get(target_of, 0) + 1
            next_frame += frame_s
        if t >= next_status - 1e-9:
            in_flight.append((t + scene.delay_s, status_message(EPOCH + t, scene)))
            next_status += 1.0
        while in_flight and in_flight[0][0] <= t + 1e-9:
            topic, payload = protocol.decode(in_flight.pop(0)[1])
            (follower.on_person if topic == protocol.PERSON else follower.on_status)(payload, t)
        command, _ = follower.decide(t)
        forward, right = person_in_camera(scene, robot, person)
        run.t.append(t)
        run.person_xy.append((person.x, person.y))
        run.robot_xy.append((robot.x, robot.y))
        run.distance_m.append(math.hypot(forward, right))
        run.bearing_deg.append(math.degrees(math.atan2(right, forward)))
        run.turn.append(0.0 if command is None else command[0] - command[1])
        if len(people) > 1:
            crosser = people[1]
            run.crosser_xy.append((crosser.x, crosser.y))
            run.crosser_distance_m.append(math.hypot(crosser.x - robot.x, crosser.y - robot.y))
        robot.step(command, scene.step_s)
        for walker in people:
            walker.step(t, scene.step_s)
    return run
