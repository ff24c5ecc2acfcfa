"""`robot-detector track`: the daemon's tracker replayed on recorded `detections` lines.

Input: lines as `robot-detector view --topic detections` prints them (`detections {json}`); every
other line is ignored. For each `detections` line one `person` line comes out, as the daemon would
have published it for that frame: same seq, t_capture, frame_w, frame_h; found, state, track_id, box
and confidence as the tracker decides, on the clock of the messages' t_capture. There are no frames,
so appearance is not used. A `detections` line that cannot be read, or whose boxes or confidences lie
outside 0..1, is skipped with a warning naming its line number (a recording cut short must not cost
the rest of it).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from robot_client import protocol

from ..model.decode import Detection
from .publish import person_message
from .tracker import PersonTracker

log = logging.getLogger(__name__)


@dataclass
class ReplaySummary:
    frames: int = 0              # detections lines replayed
    skipped: list = field(default_factory=list)  # line numbers of detections lines that could not be read
    tracking: int = 0            # frames in which the target was seen
    held: int = 0                # frames in which the target was held (unseen, predicted)
    changes: int = 0             # times the followed track changed from one id to another
    locks: int = 0               # times a target was taken while nobody was followed

    def lines(self) -> list:
        share = (self.tracking + self.held) / self.frames if self.frames else 0.0
        return [f"frames: {self.frames} replayed" + (f", {len(self.skipped)} unreadable skipped" if self.skipped else ""),
                f"frames with a target: {share:.1%} (seen {self.tracking}, held {self.held})",
                f"target changes: {self.changes} (a followed track replaced by another); locks after nobody: {self.locks}"]


BOX_NUMBERS = ("x", "y", "w", "h", "confidence")  # fractions of the frame, and a probability: 0 to 1


def _check_box_numbers(detections) -> None:
    """ProtocolError unless every detection's box and confidence lie in 0..1 (the schema takes any finite
    number; a box of 1e308 would overflow the person message's area and end the replay)."""
    for index, item in enumerate(detections):
        for name in BOX_NUMBERS:
            if not 0.0 <= item[name] <= 1.0:
                raise protocol.ProtocolError(f"detections[{index}].{name}: expected a number from 0 to 1, "
                                             f"found {item[name]!r}")


def replay(lines: Iterable[str], tracker: PersonTracker, target_class: str = "person",
           summary: ReplaySummary | None = None) -> Iterator[str]:
    """The `person` line for every readable `detections` line of `lines`."""
    summary = summary if summary is not None else ReplaySummary()
    t_previous = None
    followed = None                  # the track id followed in the last frame that had a target
    for number, line in enumerate(lines, 1):
        topic, _, body = line.strip().partition(" ")
        if topic != protocol.DETECTIONS:
            continue
        try:
            message = protocol.decode(line.strip().encode("utf-8"))[1]
            _check_box_numbers(message["detections"])
            if t_previous is not None and message["t_capture"] < t_previous:
                raise protocol.ProtocolError(f"t_capture {message['t_capture']} is earlier than the line before's "
                                             f"{t_previous}")
        except protocol.ProtocolError as error:
            summary.skipped.append(number)
            log.warning("line %d: not a readable detections message (%s); skipped", number, error)
            continue
        t_previous = message["t_capture"]
        persons = [Detection(d["cls"], d["cls_id"], float(d["confidence"]), float(d["x"]), float(d["y"]),
                             float(d["w"]), float(d["h"])) for d in message["detections"] if d["cls"] == target_class]
        target = tracker.update(message["t_capture"], persons).target
        summary.frames += 1
        if target.found:
            summary.tracking += target.state == "tracking"
            summary.held += target.held
            if followed is None:
                summary.locks += 1
            elif target.track_id != followed:
                summary.changes += 1
            followed = target.track_id
        elif tracker.target_id is None:
            followed = None
        person = person_message(message["seq"], message["t_capture"], (message["frame_w"], message["frame_h"]),
                                time.time(), target, target_class)
        yield protocol.encode(protocol.PERSON, person).decode("utf-8")
