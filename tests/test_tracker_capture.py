"""The target tracker's locking rules, and the capture's newest-frame guarantee."""
import time

import pytest

from daemon_helpers import write_clip
from detector.daemon.capture import LatestFrameCapture
from detector.model.decode import Detection
from detector.daemon.tracker import TargetTracker


def person(x, y, w, h, confidence=0.8):
    return Detection("person", 14, confidence, x, y, w, h)


def test_locks_onto_the_largest_then_keeps_that_person():
    tracker = TargetTracker(min_iou=0.3, grace_s=0.5)
    small, big = person(0.2, 0.5, 0.1, 0.3), person(0.7, 0.5, 0.2, 0.6)
    assert tracker.update([small, big], t=0.0).detection == big
    # a larger person appears; the lock stays on the one followed, who moved a little
    moved, bigger = person(0.68, 0.5, 0.2, 0.6), person(0.2, 0.5, 0.4, 0.9)
    target = tracker.update([bigger, moved], t=0.1)
    assert target.detection == moved and not target.held


def test_short_gap_is_held_then_found_false():
    tracker = TargetTracker(min_iou=0.3, grace_s=0.5)
    tracker.update([person(0.5, 0.5, 0.2, 0.5)], t=0.0)
    held = tracker.update([], t=0.3)
    assert held is not None and held.held and held.x == 0.5
    assert tracker.update([], t=0.6) is None  # beyond the grace period
    # after losing the lock, the largest person is taken again
    other = person(0.1, 0.5, 0.3, 0.6)
    assert tracker.update([person(0.9, 0.5, 0.1, 0.2), other], t=0.7).detection == other


def test_someone_else_during_the_gap_is_not_taken_over():
    tracker = TargetTracker(min_iou=0.3, grace_s=0.5)
    tracker.update([person(0.8, 0.5, 0.2, 0.5)], t=0.0)
    target = tracker.update([person(0.2, 0.5, 0.2, 0.5)], t=0.2)
    assert target.held and target.x == 0.8


def test_smoothing_moves_part_way():
    tracker = TargetTracker(smoothing=0.5)
    tracker.update([person(0.5, 0.5, 0.2, 0.5)], t=0.0)
    target = tracker.update([person(0.56, 0.5, 0.2, 0.5)], t=0.1)
    assert target.x == pytest.approx(0.53)
    assert TargetTracker(smoothing=0.0).update([person(0.56, 0.5, 0.2, 0.5)], t=0).x == 0.56


def test_capture_hands_out_only_the_newest_frame_once(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", frames=60, fps=50)
    capture = LatestFrameCapture(str(clip)).start()
    try:
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 8 and time.monotonic() < deadline:
            frame = capture.next_frame(timeout=1.0)
            if frame is not None:
                seen.append(frame.index)
                time.sleep(0.1)  # a slow consumer: 5 frames arrive meanwhile
        assert len(seen) == 8
        assert all(b > a for a, b in zip(seen, seen[1:]))  # never the same frame twice, never older
        assert min(b - a for a, b in zip(seen, seen[1:])) >= 3  # the stale ones were skipped...
        assert capture.dropped >= sum(b - a - 1 for a, b in zip(seen, seen[1:]))  # ...and counted
    finally:
        capture.stop()


def test_capture_reports_a_source_that_ends(tmp_path):
    clip = write_clip(tmp_path / "short.avi", frames=5, fps=50)
    capture = LatestFrameCapture(str(clip)).start()
    try:
        deadline = time.monotonic() + 5
        while not capture.lost and time.monotonic() < deadline:
            capture.next_frame(timeout=0.1)
        assert capture.lost
    finally:
        capture.stop()
