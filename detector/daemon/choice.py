"""Choosing whom to follow from the debug page: `GET /tracks.json` and `POST /target`.

The tracker belongs to the detection loop's thread. An HTTP thread never touches it: it checks the
request (the server has already checked that it is a JSON write: webserver.py), leaves it at the
`ChoiceDesk` and waits (at most `APPLY_TIMEOUT_S`) for the loop to apply it between two frames, so
the answer says what the tracker really did. The loop only hands over references to what it has
computed anyway; the JSON is built when a page asks.
"""
from __future__ import annotations

import json
import threading
from typing import NamedTuple

APPLY_TIMEOUT_S = 2.0
USAGE = 'send {"track_id": N} (a track of GET /tracks.json) or {"release": true}'


class Refusal(Exception):
    """A request that is not carried out: the HTTP status and the one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class Choice(NamedTuple):
    track_id: int | None   # None: release (follow nobody)


def parse_choice(request) -> Choice:
    """The choice in a POST /target body (parsed JSON), or a Refusal saying what is wrong with it."""
    if not isinstance(request, dict) or len(request) != 1:
        raise Refusal(400, f"expected an object with one key, found {json.dumps(request)[:80]}; {USAGE}")
    [(key, value)] = request.items()
    if key == "track_id" and type(value) is int:  # noqa: E721 (a bool is an int too, and no track)
        return Choice(value)
    if key == "release" and value is True:
        return Choice(None)
    raise Refusal(400, f"expected track_id to be an integer or release to be true, found "
                  f"{json.dumps(request)[:80]}; {USAGE}")


class _Pending:
    def __init__(self, choice: Choice):
        self.choice = choice
        self.done = threading.Event()
        self.error: Refusal | None = None


class ChoiceDesk:
    """Where the HTTP threads leave choices for the loop and read the loop's latest tracks."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: list = []
        self._shown = None  # (seq, t_capture, the tracker's TrackerUpdate)

    # --- the detection loop's side ---
    def show(self, seq: int, t_capture: float, tracked) -> None:
        """This frame's tracks and target (the tracker's TrackerUpdate), as a reference."""
        self._shown = (seq, t_capture, tracked)

    def apply(self, tracker) -> None:
        """Carry out the waiting choices, oldest first; called between frames by the loop."""
        with self._lock:
            pending, self._pending = self._pending, []
        try:
            for request in pending:
                if request.choice.track_id is None:
                    tracker.release()
                elif not tracker.choose(request.choice.track_id):
                    request.error = Refusal(404, f"there is no track {request.choice.track_id} now "
                                                 f"(tracks: {self._track_ids() or 'none'}); {USAGE}")
        finally:  # whatever happened, no HTTP thread waits for ever
            for request in pending:
                request.done.set()

    # --- the HTTP threads' side ---
    def request(self, choice: Choice, timeout_s: float = APPLY_TIMEOUT_S) -> None:
        """Wait until the loop has applied `choice`; a Refusal when it cannot be (unknown track) or
        was not taken in time (no frames: the choice is withdrawn, never applied later)."""
        pending = _Pending(choice)
        with self._lock:
            self._pending.append(pending)
        if not pending.done.wait(timeout_s):
            with self._lock:
                withdrawn = pending in self._pending
                if withdrawn:
                    self._pending.remove(pending)
            if withdrawn:
                raise Refusal(503, f"the detection loop took no choice within {timeout_s:g} s (is the camera "
                                   "delivering frames? see /status.json); nothing was changed")
            pending.done.wait()  # the loop took it just now
        if pending.error:
            raise pending.error

    def tracks_json(self) -> bytes:
        if self._shown is None:
            return json.dumps({"seq": None, "t_capture": None, "target": None, "state": "lost", "tracks": []}).encode()
        seq, t_capture, tracked = self._shown
        target = tracked.target
        return json.dumps({"seq": seq, "t_capture": t_capture, "target": target.track_id, "state": target.state,
                           "tracks": [{"track_id": t.track_id, **{k: round(v, 5) for k, v in t.box._asdict().items()},
                                       "state": t.state, "target": t.track_id == target.track_id}
                                      for t in tracked.tracks]}, allow_nan=False).encode()

    def _track_ids(self) -> str:
        tracks = self._shown[2].tracks if self._shown else ()
        return ", ".join(str(t.track_id) for t in tracks)


def answer_target_post(desk: ChoiceDesk, request) -> tuple:
    """(HTTP status, JSON-ready answer) of a POST /target with the parsed JSON body `request`."""
    try:
        choice = parse_choice(request)
        desk.request(choice)
    except Refusal as refusal:
        return refusal.status, {"error": str(refusal)}
    return 200, {"target": choice.track_id, "released": choice.track_id is None}
