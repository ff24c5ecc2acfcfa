"""Which person the robot follows: a track for every person, one of them the followed target.

Every detection of the target class joins a track: a constant-velocity Kalman filter over the box
(centre x, y and size w, h, normalised to the frame) predicts where each person is and how big, and
a detection may continue a track only inside that prediction's gate. Track ids are small integers,
stable while the person is tracked. All limits are in seconds and in box heights, never in frames,
so the tracker behaves alike at 30 and at 3 frames per second.

The target: in `auto` mode the largest person at first; then always that track. While it is unseen
it is `held` (reported at the motion model's prediction) for `grace_s`, then `lost`. For `relock_s`
after the last sighting only the same person may be taken again (where its motion model predicts it,
or, with frames, one first seen after that sighting whose upper-body colours match); after that the
target is forgotten and `auto` locks the largest person anew, `manual` nobody until `choose()`.
"""
from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

from ..model.decode import Detection
from .appearance import Appearance

LOCK_MODES = ("auto", "manual")

# The motion model, in units of the box height (a person's apparent size: a near person moves faster
# across the image than a far one at the same speed) and seconds. A walker's velocity is uncertain
# by at most a walking speed, so the gate grows linearly with the time unseen, not without bound.
MEASUREMENT_NOISE = np.array([0.04, 0.04, 0.1, 0.1])  # std of a detection's x, y, w, h, in box heights
ACCELERATION_NOISE = np.array([0.3, 0.3, 0.03, 0.03])  # how fast velocity uncertainty grows, height^2/s^3 (x, y, w, h)
VELOCITY_STD_MAX = np.array([0.4, 0.15, 0.15, 0.15])  # bound of that uncertainty, heights/s (x, y, w, h)
NEW_TRACK_VELOCITY_STD = np.array([0.6, 0.3, 0.3, 0.3])  # a new track's velocity, heights/s: 2 std a brisk walk
SECOND_PASS_IOU = 0.5      # overlap with a prediction that pairs what the gate left apart
NEARER_GROWTH = np.array([2.0, 1.2])  # w, h in detection noise stds: a box this much larger than the target's is someone nearer
GATE = 13.3                # squared normalised distance a match may have (chi-square, 4 dof, p = 0.01)
APPEARANCE_RECHECK_S = 0.2  # how often a candidate's colours are compared with the lost target's
FORGET_UNSEEN_S = 1.0      # a track (not the target) unseen this long is dropped


class Box(NamedTuple):
    """Centre x, y and size w, h, fractions of the frame width and height."""
    x: float
    y: float
    w: float
    h: float


class Track(NamedTuple):
    """One person as the tracker sees it in this frame."""
    track_id: int
    box: Box                 # this frame's detection, or the motion model's prediction while unseen
    state: str               # "tracking": seen in this frame; "held": unseen, predicted
    detection: Detection | None  # the detection this track took in this frame


class Target(NamedTuple):
    """The followed person in this frame."""
    track_id: int | None     # None while `lost`
    state: str               # "tracking" (seen), "held" (unseen, within the grace) or "lost"
    box: Box | None          # seen: the detection's box (smoothed); held: the prediction; lost: None
    confidence: float | None  # of the last detection taken (held: the last seen)
    detection: Detection | None  # the detection taken in this frame; None while held or lost

    @property
    def found(self) -> bool:
        return self.state != "lost"

    @property
    def held(self) -> bool:
        return self.state == "held"


LOST = Target(None, "lost", None, None, None)


class TrackerUpdate(NamedTuple):
    """What `PersonTracker.update` decided for one frame."""
    tracks: tuple            # every Track alive in this frame (seen or held), by id
    target: Target
    track_ids: tuple         # for each detection passed in, in order: the id of the track it joined


class _Filter:
    """A constant-velocity Kalman filter over one track's box: each coordinate (x, y, w, h) is an
    independent (position, velocity) pair, so the state is five arrays of 4 and the steps are a few
    array operations, done for all tracks at once (_grow, _corrected)."""

    def __init__(self, box: np.ndarray):
        scale = _scale(box)
        self.position = box.astype(np.float64)
        self.velocity = np.zeros(4)
        self.p00 = (MEASUREMENT_NOISE * scale) ** 2     # position variance
        self.p01 = np.zeros(4)                          # position-velocity covariance
        self.p11 = (NEW_TRACK_VELOCITY_STD * scale) ** 2  # velocity variance: a new track's speed is unknown

    def predicted(self, dt: float) -> tuple:
        """(position, position variance) after `dt` seconds."""
        position, p00, _, _ = _grow(self.position, self.velocity, self.p00, self.p01, self.p11, max(dt, 0.0))
        return position, p00


STATE = ("position", "velocity", "p00", "p01", "p11")


def _stacked(filters) -> list:
    """The filters' states as arrays of shape (n, 4), in the order of STATE."""
    return [np.array([getattr(f, name) for f in filters]) for name in STATE]


def _corrected(position, velocity, p00, p01, p11, measured) -> tuple:
    """The Kalman update of (n, 4) states by (n, 4) measurements, in the order of STATE."""
    r = (MEASUREMENT_NOISE * _scale(measured)) ** 2
    innovation_var = p00 + r
    gain_position, gain_velocity = p00 / innovation_var, p01 / innovation_var
    innovation = measured - position
    return (position + gain_position * innovation, velocity + gain_velocity * innovation,
            (1 - gain_position) * p00, (1 - gain_position) * p01, p11 - gain_velocity * p01)


def _grow(position, velocity, p00, p01, p11, dt) -> tuple:
    """(position, p00, p01, p11) after `dt` seconds of constant velocity; arrays of shape (..., 4), dt
    a number or an array of shape (..., 1), so that all tracks can be predicted at once."""
    scale = _scale(position)
    grown = np.minimum(p11 + ACCELERATION_NOISE * scale ** 2 * dt, (VELOCITY_STD_MAX * scale) ** 2)
    p11 = np.maximum(p11, grown)  # a new track's larger uncertainty only shrinks by measurements
    return position + velocity * dt, p00 + 2 * dt * p01 + dt * dt * p11, p01 + dt * p11, p11


UNITS = np.array([0.75, 1.0, 0.75, 1.0])  # a box height in fractions of the width (4:3) and of the height


def _scale(box: np.ndarray) -> np.ndarray:
    """The box height expressed in each coordinate's unit (x and w are fractions of the width), for
    one box (4,) or many (n, 4). The frame is taken as 4:3; another aspect only widens or narrows the
    horizontal gate a little."""
    return np.maximum(box[..., 3:4], 1e-3) * UNITS


class _TrackState:
    def __init__(self, track_id: int, detection: Detection, t: float):
        self.track_id = track_id
        self.filter = _Filter(np.array([detection.x, detection.y, detection.w, detection.h]))
        self.t_filter = t          # the time the filter's state refers to
        self.t_born = t            # first seen: a track seen together with the target is someone else
        self.t_seen = t
        self.t_compared = -math.inf  # when its colours were last compared with the lost target's
        self.detection: Detection | None = detection
        self.confidence = detection.confidence

    def box_at(self, t: float) -> Box:
        position, _ = self.filter.predicted(t - self.t_filter)
        return _clipped(position)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every centre-size box of (n, 4) `a` with every one of (m, 4) `b`: (n, m)."""
    low = np.maximum(a[:, None, :2] - a[:, None, 2:] / 2, b[None, :, :2] - b[None, :, 2:] / 2)
    high = np.minimum(a[:, None, :2] + a[:, None, 2:] / 2, b[None, :, :2] + b[None, :, 2:] / 2)
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    union = np.prod(a[:, 2:], axis=1)[:, None] + np.prod(b[:, 2:], axis=1)[None] - inter
    return inter / np.maximum(union, 1e-9)


def _clipped(position: np.ndarray) -> Box:
    x, y = (min(max(float(v), 0.0), 1.0) for v in position[:2])
    w, h = (min(max(float(v), 1e-3), 1.0) for v in position[2:])
    return Box(x, y, w, h)


class PersonTracker:
    """Tracks every person and follows one of them; see the module's docstring.

    grace_s: how long an unseen target is still reported (`held`) before `found` goes false.
    relock_s: seconds after the target's last sighting during which only the same person may be taken
      again; after that the target is forgotten.
    lock: "auto" (the largest person is locked when nobody is followed) or "manual" (only `choose`).
    smoothing in [0, 1): exponential smoothing of the reported box while the target is seen (0 = the
      detection's box); the new box weighs 1 - smoothing.
    appearance: learn the target's upper-body colours from the frames given to `update` and re-take a
      person whose colours match during `relock_s` even outside the motion gate.
    """

    def __init__(self, grace_s: float = 0.5, relock_s: float = 2.0, lock: str = "auto", smoothing: float = 0.0,
                 appearance: bool = True):
        if lock not in LOCK_MODES:
            raise ValueError(f"lock must be one of {', '.join(LOCK_MODES)}, found {lock!r}")
        self.grace_s = grace_s
        self.relock_s = relock_s
        self.lock = lock
        self.smoothing = smoothing
        self.appearance = Appearance() if appearance else None
        self._tracks: dict = {}          # track id -> _TrackState
        self._next_id = 1
        self._target_id: int | None = None
        self._target_box: Box | None = None  # the reported (smoothed) box while seen
        self._t_blocked_until = -math.inf    # after release(): auto mode locks nobody before this time
        self._t = -math.inf
        self._lock = threading.Lock()        # choose/release may come from the HTTP thread

    # --- the user's choice ---
    def choose(self, track_id: int) -> bool:
        """Follow track `track_id` from now on; False (and nothing changes) when no such track is alive.
        Safe to call from another thread than `update`'s (the debug page's)."""
        with self._lock:
            track = self._tracks.get(track_id)
            if track is None:
                return False
            self._set_target(track)
            return True

    def release(self) -> None:
        """Follow nobody: in auto mode until `relock_s` has passed, in manual mode until `choose`.
        Safe to call from another thread than `update`'s."""
        with self._lock:
            self._forget_target()
            self._t_blocked_until = self._t + self.relock_s

    @property
    def target_id(self) -> int | None:
        return self._target_id

    # --- one frame ---
    def update(self, t_capture_s: float, detections, frame_bgr=None) -> TrackerUpdate:
        """detections: this frame's detections of the followed class (finite numbers only);
        t_capture_s: the frame's capture time in seconds on a clock that does not step (the daemon:
        monotonic; `track`: the messages' t_capture); frame_bgr: the picture, for appearance (optional)."""
        with self._lock:
            return self._update(t_capture_s, list(detections), frame_bgr)

    def _update(self, t_capture_s: float, detections: list, frame_bgr) -> TrackerUpdate:
        self._t = t_capture_s
        self._drop_stale(t_capture_s)  # first: after a long camera outage the old target is no candidate
        matches = self._associate(t_capture_s, detections)
        if matches:  # predict and correct every matched track at once
            columns, matched = list(matches), list(matches.values())
            state = _stacked([track.filter for track in matched])
            dt = np.maximum([[t_capture_s - track.t_filter] for track in matched], 0.0)
            position, p00, p01, p11 = _grow(*state, dt)
            measured = np.array([[detections[c].x, detections[c].y, detections[c].w, detections[c].h] for c in columns])
            state = _corrected(position, state[1], p00, p01, p11, measured)
            for row, (column, track) in enumerate(zip(columns, matched)):
                for name, values in zip(STATE, state):
                    setattr(track.filter, name, values[row])
                track.t_filter = track.t_seen = t_capture_s
                track.detection, track.confidence = detections[column], detections[column].confidence
        joined = []  # for each detection, its track
        for index, detection in enumerate(detections):
            track = matches.get(index)
            if track is None:
                track = _TrackState(self._next_id, detection, t_capture_s)
                self._tracks[track.track_id] = track
                self._next_id += 1
            joined.append(track)
        seen = {id(track) for track in joined}
        for track in self._tracks.values():
            if id(track) not in seen:
                track.detection = None
        if self.appearance is not None and frame_bgr is not None:
            self._learn_or_match(frame_bgr)
        self._relock(t_capture_s)
        target = self._report(t_capture_s)
        tracks = tuple(Track(track.track_id, track.box_at(t_capture_s) if track.detection is None
                             else Box(*track.detection[3:]), "tracking" if track.detection else "held", track.detection)
                       for track in sorted(self._tracks.values(), key=lambda s: s.track_id)
                       if t_capture_s - track.t_seen <= FORGET_UNSEEN_S)
        return TrackerUpdate(tracks, target, tuple(track.track_id for track in joined))  # ids after a re-take

    def _associate(self, t: float, detections: list) -> dict:
        """{detection index: track}: pairs inside the gate, greedily by cost (normalised distance plus
        uncertainty); with a handful of people greedy and optimal assignment hardly ever differ."""
        if not detections or not self._tracks:
            return {}
        tracks = list(self._tracks.values())
        measured = np.array([[d.x, d.y, d.w, d.h] for d in detections])
        state = _stacked([track.filter for track in tracks])
        dt = np.maximum([[t - track.t_filter] for track in tracks], 0.0)
        position, variance, _, _ = _grow(*state, dt)
        noise_std = MEASUREMENT_NOISE * _scale(position)
        noise = noise_std ** 2
        differences = measured[None] - position[:, None]
        distances = ((differences ** 2) / (variance + noise)[:, None]).sum(axis=2)
        # The followed person never takes the box of someone nearer: hidden behind a nearer person it is
        # not detected, and that person's box, covering the prediction, is wider and taller than jitter
        # explains. The gate alone lets it in (the size of a person unseen for a while is uncertain).
        is_target = np.array([track.track_id == self._target_id for track in tracks])
        nearer = is_target[:, None] & (differences[..., 2:] > NEARER_GROWTH * noise_std[:, None, 2:]).all(axis=2)
        # Not the distance alone: a track unseen for a while has a wide gate, and would take at a small
        # distance the detection of one seen just now. Its horizontal uncertainty (where people differ
        # most) costs as in the negative log-likelihood.
        costs = distances + np.log((variance[:, :1] + noise[:, :1]) / noise[:, :1])
        costs = np.where((distances <= GATE) & ~nearer, costs, np.inf).ravel()
        matches, taken = {}, set()
        for flat in np.argsort(costs).tolist():
            if costs[flat] == np.inf:
                break
            row, column = divmod(flat, len(detections))
            if column not in matches and row not in taken:
                matches[column] = tracks[row]
                taken.add(row)
        # Second pass: a box jittering more than the model expects must not split a person into two
        # tracks; what is left pairs up where a detection overlaps a prediction well (as ByteTrack does).
        overlaps = _iou(position, measured)
        for flat in np.argsort(-overlaps, axis=None).tolist():
            row, column = divmod(flat, len(detections))
            if overlaps[row, column] < SECOND_PASS_IOU:
                break
            if column not in matches and row not in taken and not nearer[row, column]:
                matches[column] = tracks[row]
                taken.add(row)
        return matches

    def _drop_stale(self, t: float) -> None:
        for track_id in [i for i, s in self._tracks.items() if i != self._target_id and t - s.t_seen > FORGET_UNSEEN_S]:
            del self._tracks[track_id]
        target = self._tracks.get(self._target_id)
        if target is not None and t - target.t_seen > max(self.relock_s, self.grace_s):
            self._forget_target()

    def _learn_or_match(self, frame_bgr) -> None:
        target = self._tracks.get(self._target_id)
        if target is None:
            return
        if target.detection is not None:
            others = [s.detection for s in self._tracks.values() if s is not target and s.detection is not None]
            self.appearance.learn(frame_bgr, target.detection, others)
        elif self._t - target.t_seen > self.grace_s:
            # Only a track first seen after the target's last sighting may be the target come back: one that
            # was in view together with it is provably someone else, however alike the clothes. Each
            # candidate is looked at every RECHECK_S, not every frame: colours hardly change faster.
            candidates = [s for s in self._tracks.values() if s is not target and s.detection is not None
                          and s.t_born > target.t_seen and self._t - s.t_compared >= APPEARANCE_RECHECK_S]
            for candidate in candidates:
                candidate.t_compared = self._t
            match = self.appearance.best_match(frame_bgr, [s.detection for s in candidates])
            if match is not None:  # the same person, back outside its motion gate: it keeps its id
                found = candidates[match]
                del self._tracks[found.track_id]
                found.track_id = target.track_id
                self._tracks[found.track_id] = found
                self._target_box = None

    def _relock(self, t: float) -> None:
        if self._target_id is not None or self.lock != "auto" or t < self._t_blocked_until:
            return
        seen = [s for s in self._tracks.values() if s.detection is not None]
        if seen:
            self._set_target(max(seen, key=lambda s: s.detection.w * s.detection.h))

    def _report(self, t: float) -> Target:
        track = self._tracks.get(self._target_id)
        if track is None:
            return LOST
        if track.detection is not None:
            box = Box(*track.detection[3:])
            if self._target_box is not None and self.smoothing:
                box = Box(*(self.smoothing * a + (1 - self.smoothing) * b for a, b in zip(self._target_box, box)))
            self._target_box = box
            return Target(track.track_id, "tracking", box, track.confidence, track.detection)
        self._target_box = None
        if t - track.t_seen <= self.grace_s:
            return Target(track.track_id, "held", track.box_at(t), track.confidence, None)
        return LOST

    def _set_target(self, track: _TrackState) -> None:
        if track.track_id != self._target_id:
            self._target_id, self._target_box = track.track_id, None
            if self.appearance is not None:
                self.appearance.reset()
        self._t_blocked_until = -math.inf

    def _forget_target(self) -> None:
        if self._target_id is not None:
            track = self._tracks.get(self._target_id)
            self._target_id, self._target_box = None, None
            if track is not None and self._t - track.t_seen > FORGET_UNSEEN_S:
                del self._tracks[track.track_id]
        if self.appearance is not None:
            self.appearance.reset()
