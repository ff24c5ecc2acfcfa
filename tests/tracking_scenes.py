"""Synthetic `detections` of people walking in front of a robot's camera, for the tracker's tests.

The world: a pinhole camera 20 cm above the floor looking straight ahead (60 x 45 degrees), people as
upright 1.7 m x 0.45 m boxes with their feet on the floor. A detector is imitated: boxes are the
visible part of each person (clipped to the frame; people less than half in view are not found),
each edge jitters, a person is missed at random (`miss`), and a person whose box is covered by a
nearer one's for more than OCCLUDED of its area is not detected at all (occlusion, and Darknet's NMS
removing the farther of two overlapping boxes of a class). Every run is seeded.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

CAMERA_HEIGHT_M = 0.2
HFOV_DEG, VFOV_DEG = 60.0, 45.0
PERSON_HEIGHT_M, PERSON_WIDTH_M = 1.7, 0.45
FRAME_W, FRAME_H = 640, 480
OCCLUDED = 0.3           # share of a box's area a nearer box must cover to hide it
EDGE_NOISE = 0.01        # std of each box edge, fraction of the frame
EPOCH = 1.7e9            # Unix-looking capture times (in the past: t_publish of a replay is later)


@dataclass
class Walker:
    """Lateral position x (m, right positive) and distance z (m) over time: `legs` of (duration_s,
    vx, vz) walked one after the other from (x0, z0), then standing."""
    x0: float
    z0: float
    legs: tuple = ()

    def at(self, t: float) -> tuple:
        x, z, start = self.x0, self.z0, 0.0
        for duration, vx, vz in self.legs:
            step = min(max(t - start, 0.0), duration)
            x, z, start = x + vx * step, z + vz * step, start + duration
        return x, z


def true_box(x_m: float, z_m: float):
    """The visible part of a person at (x, z) as (x, y, w, h) fractions of the frame, or None when less
    than half of its width is in view or it is behind the camera."""
    if z_m <= 0.1:
        return None
    half_w = z_m * math.tan(math.radians(HFOV_DEG) / 2)
    half_h = z_m * math.tan(math.radians(VFOV_DEG) / 2)
    left, right = 0.5 + (x_m - PERSON_WIDTH_M / 2) / (2 * half_w), 0.5 + (x_m + PERSON_WIDTH_M / 2) / (2 * half_w)
    top = 0.5 - (PERSON_HEIGHT_M - CAMERA_HEIGHT_M) / (2 * half_h)
    bottom = 0.5 + CAMERA_HEIGHT_M / (2 * half_h)
    visible_left, visible_right = max(left, 0.0), min(right, 1.0)
    if visible_right - visible_left < (right - left) / 2:
        return None
    top, bottom = max(top, 0.0), min(bottom, 1.0)
    return ((visible_left + visible_right) / 2, (top + bottom) / 2, visible_right - visible_left, bottom - top)


def iou(a, b) -> float:
    overlap_w = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
    overlap_h = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2)
    inter = max(overlap_w, 0.0) * max(overlap_h, 0.0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _covered(far, near) -> float:
    overlap_w = min(far[0] + far[2] / 2, near[0] + near[2] / 2) - max(far[0] - far[2] / 2, near[0] - near[2] / 2)
    overlap_h = min(far[1] + far[3] / 2, near[1] + near[3] / 2) - max(far[1] - far[3] / 2, near[1] - near[3] / 2)
    return max(overlap_w, 0.0) * max(overlap_h, 0.0) / (far[2] * far[3])


@dataclass
class Frame:
    seq: int
    t: float                 # seconds from the scene's start
    truth: list              # per walker: its true visible box, or None when out of view
    detected: list           # per walker: the detection's box, or None when not detected

    def line(self) -> str:
        """The `detections` line `robot-detector view --topic detections` would print for this frame."""
        items = [{"cls": "person", "cls_id": 14, "confidence": 0.7, "x": round(box[0], 6), "y": round(box[1], 6),
                  "w": round(box[2], 6), "h": round(box[3], 6)} for box in self.detected if box is not None]
        message = {"v": 1, "seq": self.seq, "t_capture": round(EPOCH + self.t, 6),
                   "t_publish": round(EPOCH + self.t + 0.05, 6), "frame_w": FRAME_W, "frame_h": FRAME_H,
                   "detections": items}
        return "detections " + json.dumps(message, separators=(",", ":"))


def render(walkers, fps: float, duration_s: float, seed: int, miss: float = 0.1) -> list:
    """The scene's frames at `fps`: what the imitated detector reports of each walker."""
    rng = random.Random(seed)
    frames = []
    for seq in range(int(duration_s * fps) + 1):
        t = seq / fps
        places = [walker.at(t) for walker in walkers]
        truth = [true_box(*place) for place in places]
        detected = []
        for index, box in enumerate(truth):
            hidden = box is None or rng.random() < miss or any(
                other is not None and places[j][1] < places[index][1] and _covered(box, other) > OCCLUDED
                for j, other in enumerate(truth) if j != index)
            if hidden:
                detected.append(None)
                continue
            left, right = box[0] - box[2] / 2 + rng.gauss(0, EDGE_NOISE), box[0] + box[2] / 2 + rng.gauss(0, EDGE_NOISE)
            top, bottom = box[1] - box[3] / 2 + rng.gauss(0, EDGE_NOISE), box[1] + box[3] / 2 + rng.gauss(0, EDGE_NOISE)
            left, right, top, bottom = max(left, 0.0), min(right, 1.0), max(top, 0.0), min(bottom, 1.0)
            detected.append(((left + right) / 2, (top + bottom) / 2, right - left, bottom - top))
        frames.append(Frame(seq, t, truth, detected))
    return frames


def crossing(kind: str, seed: int) -> tuple:
    """(walkers, duration_s): the followed person (walker 0) ahead, slowly drifting, and another person
    crossing the whole view `kind` = "front" (nearer), "behind" (farther) or "similar" (a little nearer,
    so of about the same size, and hiding the followed one while they overlap).
    The crosser starts out of view, so that the followed one is the only one to lock onto."""
    rng = random.Random(seed)
    z_followed = rng.uniform(2.5, 3.5)
    # the robot keeps its distance to the followed person: it drifts sideways, hardly in depth
    followed = Walker(rng.uniform(-0.3, 0.3), z_followed, ((60.0, rng.uniform(-0.2, 0.2), rng.uniform(-0.03, 0.03)),))
    z_other = z_followed + {"front": rng.uniform(-1.6, -1.0), "behind": rng.uniform(1.0, 2.0),
                            "similar": -rng.uniform(0.1, 0.3)}[kind]
    speed = rng.uniform(0.8, 1.5) * rng.choice((-1, 1))
    half_view = z_other * math.tan(math.radians(HFOV_DEG) / 2) + PERSON_WIDTH_M
    start = -math.copysign(half_view, speed)
    crossing_s = 2 * half_view / abs(speed)
    lead_s = rng.uniform(1.0, 2.0)
    other = Walker(start, z_other, ((lead_s, 0.0, 0.0), (crossing_s, speed, 0.0)))
    return [followed, other], lead_s + crossing_s + 1.0


def walk_across(seed: int, distance_m: float = 3.0, speed_m_s: float = 1.0) -> tuple:
    """(walkers, duration_s): one person walking across the whole view at `distance_m`."""
    rng = random.Random(seed)
    direction = rng.choice((-1, 1))
    half_view = distance_m * math.tan(math.radians(HFOV_DEG) / 2) + PERSON_WIDTH_M
    crossing_s = 2 * half_view / speed_m_s
    start_s = rng.uniform(0.0, 1.0)
    walker = Walker(-direction * half_view, distance_m, ((start_s, 0.0, 0.0), (crossing_s, direction * speed_m_s, 0.0)))
    return [walker], start_s + crossing_s


def walk_out(seed: int) -> tuple:
    """(walkers, t_last_in_view_s, duration_s): the followed person (walker 0, the larger) walks out of
    view sideways at 1 m/s while another stands on the other side of the view, never in the motion's way."""
    rng = random.Random(seed)
    direction = rng.choice((-1, 1))
    z = rng.uniform(2.0, 2.5)
    followed = Walker(direction * rng.uniform(0.0, 0.3), z, ((rng.uniform(1.0, 2.0), 0.0, 0.0), (10.0, direction * 1.0, 0.0)))
    other = Walker(-direction * rng.uniform(0.8, 1.1) * 3.0 * math.tan(math.radians(HFOV_DEG) / 2) / 1.5, 3.0 + rng.uniform(0.0, 0.5))
    return [followed, other], 12.0


def hidden_manoeuvre(what: str, seed: int) -> tuple:
    """(walkers, t_hidden_s, duration_s): the followed person (walker 0) walks sideways at 0.5 m/s, 3 m
    away; a nearer person crosses in front the other way at 1 m/s and hides it; at that moment the
    followed one `what` = "stops", "turns back" or "goes on". Walker 1 is the crosser."""
    rng = random.Random(seed)
    direction = rng.choice((-1, 1))
    z_followed, z_other, speed = 3.0 + rng.uniform(-0.2, 0.2), 1.8 + rng.uniform(-0.2, 0.2), 0.5
    t_meet = 2.5 + rng.uniform(0.0, 0.5)
    x_meet = direction * rng.uniform(0.0, 0.3)
    # the crosser walks against the followed one and is in front of it (same bearing) at t_meet
    x_other_meet = x_meet * z_other / z_followed
    after = {"stops": 0.0, "turns back": -direction * speed, "goes on": direction * speed}[what]
    followed = Walker(x_meet - direction * speed * t_meet, z_followed,
                      ((t_meet, direction * speed, 0.0), (10.0, after, 0.0)))
    other = Walker(x_other_meet + direction * 1.0 * t_meet, z_other, ((20.0, -direction * 1.0, 0.0),))
    return [followed, other], t_meet, t_meet + 3.0


def overtaking(seed: int, in_front: bool) -> tuple:
    """(walkers, duration_s): the followed person (walker 0) walks sideways at 0.4 m/s; another walks the
    same way at 1.2 m/s a little nearer (`in_front`) or farther, catches up and overtakes."""
    rng = random.Random(seed)
    direction = rng.choice((-1, 1))
    z_followed = 3.0 + rng.uniform(-0.3, 0.3)
    z_other = z_followed + (-0.6 if in_front else 0.6) + rng.uniform(-0.1, 0.1)
    half_view = z_other * math.tan(math.radians(HFOV_DEG) / 2)
    followed = Walker(-direction * 0.6, z_followed, ((20.0, direction * 0.4, 0.0),))
    other = Walker(-direction * (half_view + PERSON_WIDTH_M), z_other, ((1.0, 0.0, 0.0), (20.0, direction * 1.2, 0.0)))
    return [followed, other], 6.0


def replayed(walkers, fps: float, duration_s: float, seed: int, **tracker_options) -> tuple:
    """(frames, person messages): the scene through `track`'s own replay, in this process."""
    from detector.daemon.replay import replay
    from detector.daemon.tracker import PersonTracker
    frames = render(walkers, fps, duration_s, seed)
    tracker = PersonTracker(appearance=False, **tracker_options)
    persons = [json.loads(line.partition(" ")[2]) for line in replay([frame.line() for frame in frames], tracker)]
    return frames, persons


def reports(person: dict, box) -> bool:
    """True when `person` reports the detection `box` as the seen target (the tracker passes the
    detection's box through unchanged while it sees the target)."""
    return (box is not None and person["state"] == "tracking"
            and all(abs(person[key] - round(value, 6)) < 2e-6 for key, value in zip("xywh", box)))


def steered_to_other(frame: Frame, person: dict, other: int = 1, followed: int = 0) -> bool:
    """True when `person` reports the other walker's detection while that one is not standing in
    front of the followed one (their boxes overlap by less than IoU 0.3): the robot would be steered
    towards somebody else. (Where the two overlap, which detection is whose cannot matter to it.)"""
    if not reports(person, frame.detected[other]):
        return False
    return frame.truth[followed] is None or iou(frame.truth[followed], frame.truth[other]) < 0.3
