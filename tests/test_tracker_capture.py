"""The capture's newest-frame guarantee and camera handling (the tracker's rules: test_tracker.py)."""
import time

import cv2
import numpy as np
import pytest

from daemon_helpers import Daemon, Listener, write_clip
from darknet_files import make_params, person_last_layer, write_weights
from detector.capture import (CameraFormat, CaptureFailed, LatestFrameCapture, camera_device, request_format,
                                     source_kind)


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


def test_a_file_that_ended_stays_ended(tmp_path):
    """Without --loop a 5-frame clip hands out 5 frames, then nothing: it is not reopened and replayed."""
    clip = write_clip(tmp_path / "five.avi", frames=5, fps=50)
    capture = LatestFrameCapture(str(clip)).start()
    try:
        handed = []
        deadline = time.monotonic() + 2.0  # the clip lasts 0.1 s; a replay would start within 0.1 s of its end
        while time.monotonic() < deadline:
            frame = capture.next_frame(timeout=0.05)
            if frame is not None:
                handed.append(frame.index)
        assert len(handed) + capture.dropped == 5 and handed == sorted(set(handed)), (handed, capture.dropped)
        assert max(handed) == 4
        assert capture.ended and capture.lost
    finally:
        capture.stop()


def test_frames_carry_monotonic_capture_times(tmp_path):
    capture = LatestFrameCapture("synthetic").start()
    try:
        frames = [capture.next_frame(timeout=1.0) for _ in range(3)]
    finally:
        capture.stop()
    assert all(f is not None for f in frames)
    now_monotonic, now_wall = time.monotonic(), time.time()
    assert all(0 <= now_monotonic - f.t_monotonic < 2 and 0 <= now_wall - f.t_capture < 2 for f in frames)
    assert frames[0].t_monotonic < frames[1].t_monotonic < frames[2].t_monotonic


def test_a_capture_thread_failure_reaches_the_frame_loop():
    """An exception inside the capture thread is not swallowed: next_frame raises CaptureFailed."""
    class BrokenCamera:
        def isOpened(self):  # noqa: N802
            return True

        def get(self, prop):
            return 0.0

        def read(self):
            raise MemoryError("no buffer for the frame")

        def release(self):
            pass

    capture = LatestFrameCapture("synthetic", opener=lambda source: BrokenCamera()).start()
    try:
        with pytest.raises(CaptureFailed, match="MemoryError: no buffer"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                capture.next_frame(timeout=0.1)
    finally:
        capture.stop()


# --- webcams: no camera exists here; a character device stands in for the path checks ---

def test_source_kinds(tmp_path):
    by_id = tmp_path / "v4l" / "by-id"
    by_id.mkdir(parents=True)
    (by_id / "usb-Cam_123-video-index0").symlink_to("/dev/null")  # a symlink to a character device
    (tmp_path / "clip.avi").write_bytes(b"")
    assert source_kind("/dev/null") == "camera"
    assert source_kind(str(by_id / "usb-Cam_123-video-index0")) == "camera"
    assert source_kind("/dev/video7") == "camera"  # unplugged now, yet a camera path: retried, not refused
    assert source_kind("/dev/v4l/by-id/usb-Absent-video-index0") == "camera"
    assert source_kind("2") == "camera"
    assert source_kind(str(tmp_path / "clip.avi")) == "file"
    assert source_kind(str(tmp_path / "missing.mp4")) == "file"
    assert source_kind("rtsp://cam.local/stream") == "url"
    assert source_kind("HTTPS://cam.local/video.mjpg") == "url"
    assert source_kind("file:///videos/clip.avi") == "file"  # a recording: played once, never live
    assert source_kind("nosuch://x") == "file"  # refused as a missing file, not opened as a stream
    assert source_kind("synthetic") == "synthetic"


def test_a_file_url_is_a_recording_played_once_by_the_real_daemon(tmp_path):
    """A file:// source was classed as a live stream: the daemon said live: true (the client drove
    without --allow-recorded) and reopened the clip at its end forever. It is a file: live: false, and
    the clip ends; a missing one is refused like a missing path."""
    clip = write_clip(tmp_path / "a clip.avi", frames=5, fps=10)
    weights = tmp_path / "p.weights"
    write_weights(weights, make_params("yolov1-tiny", 1, person_last_layer("yolov1-tiny", .5, .5, .2, .2)))
    with Daemon("--source", clip.as_uri(), "--weights", weights, http=False) as daemon:
        listener = Listener(daemon.pub, topics=["status"])
        try:
            assert listener.wait_for(lambda l: any(s["state"] == "camera_lost" for s in l.of("status")), 60)
            time.sleep(1.5)  # a replay would hand out more frames here
        finally:
            listener.close()
    statuses = listener.of("status")
    assert statuses and all(s["live"] is False for s in statuses), statuses
    assert statuses[-1]["frames"] + statuses[-1]["dropped"] == 5, statuses[-1]
    assert "ended after 5 frames" in daemon.stderr, daemon.stderr
    missing = Daemon("--source", (tmp_path / "missing.avi").as_uri(), "--weights", weights, http=False).start()
    assert missing.wait(60) == 78 and "missing.avi does not exist" in missing.stderr, missing.stderr


def test_a_by_id_path_is_resolved_again_at_every_open(tmp_path):
    link = tmp_path / "usb-Cam_123-video-index0"
    link.symlink_to("/dev/null")
    assert camera_device(str(link)) == "/dev/null"
    link.unlink()  # unplugged, then back as another device node behind the same name
    link.symlink_to("/dev/zero")
    assert camera_device(str(link)) == "/dev/zero"
    assert camera_device("3") == 3


class FakeV4L2Camera:
    """Stands in for a webcam (none exists here): keeps what was asked, grants what a typical UVC
    driver would (the nearest offered size; 30 fps only in MJPG), and records the order of requests."""

    OFFERED = {"MJPG": [(1280, 720, 30.0), (640, 480, 30.0)], "YUYV": [(1280, 720, 10.0), (640, 480, 30.0)]}

    def __init__(self):
        self.calls = []
        self.fourcc, self.size, self.fps = "YUYV", (640, 480), 30.0

    def isOpened(self):  # noqa: N802
        return True

    def set(self, prop, value):
        self.calls.append(prop)
        if prop == cv2.CAP_PROP_FOURCC:
            self.fourcc = "".join(chr((int(value) >> s) & 0xFF) for s in (0, 8, 16, 24))
            self.size, self.fps = self.OFFERED[self.fourcc][-1][:2], 30.0  # a format change resets the size
        elif prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            wanted = (value, self.size[1]) if prop == cv2.CAP_PROP_FRAME_WIDTH else (self.size[0], value)
            self.size = min(self.OFFERED[self.fourcc], key=lambda o: abs(o[0] - wanted[0]) + abs(o[1] - wanted[1]))[:2]
        elif prop == cv2.CAP_PROP_FPS:
            self.fps = min(value, dict(((w, h), f) for w, h, f in self.OFFERED[self.fourcc])[self.size])
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter_fourcc(*self.fourcc)), cv2.CAP_PROP_FRAME_WIDTH: self.size[0],
                cv2.CAP_PROP_FRAME_HEIGHT: self.size[1], cv2.CAP_PROP_FPS: self.fps}.get(prop, 0.0)


def test_format_request_asks_fourcc_first_and_reports_what_was_granted():
    camera = FakeV4L2Camera()
    granted = request_format(camera, CameraFormat(1280, 720, 30.0, "MJPG"))
    assert camera.calls == [cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS]
    assert granted == CameraFormat(1280, 720, 30.0, "MJPG")
    # YUYV at 720p: this driver grants the size but only 10 fps, and that is what is reported
    assert request_format(FakeV4L2Camera(), CameraFormat(1280, 720, 30.0, "YUYV")) == CameraFormat(1280, 720, 10.0, "YUYV")
    # nothing asked: nothing set, the driver's default reported
    camera = FakeV4L2Camera()
    assert request_format(camera, CameraFormat()) == CameraFormat(640, 480, 30.0, "YUYV") and camera.calls == []


def test_a_camera_that_vanishes_is_reopened_by_its_path(tmp_path):
    """A camera whose reads fail (unplugged) and whose path then fails to open is retried under the
    same path and its format asked for again when it returns."""
    link = tmp_path / "usb-Cam_123-video-index0"
    link.symlink_to("/dev/null")
    opened = []

    class Camera(FakeV4L2Camera):
        def __init__(self, present, frames):
            super().__init__()
            self.present, self.frames = present, frames

        def isOpened(self):  # noqa: N802
            return self.present

        def read(self):
            if self.frames <= 0:
                return False, None
            self.frames -= 1
            time.sleep(0.01)
            return True, np.zeros((480, 640, 3), np.uint8)

        def release(self):
            pass

    plan = iter([(True, 3), (False, 0), (False, 0), (True, 1000)])  # frames, unplugged twice, back

    def opener(source):
        opened.append(source)
        return Camera(*next(plan))

    capture = LatestFrameCapture(str(link), camera_format=CameraFormat(640, 480, None, "MJPG"), opener=opener).start()
    try:
        saw_lost = False
        deadline = time.monotonic() + 5
        while len(opened) < 4 and time.monotonic() < deadline:
            capture.next_frame(timeout=0.05)
            saw_lost = saw_lost or capture.lost
        assert capture.next_frame(timeout=1.0) is not None  # frames flow again
        assert saw_lost and not capture.lost and not capture.ended
        assert opened == [str(link)] * 4
        assert capture.granted == CameraFormat(640, 480, 30.0, "MJPG")
    finally:
        capture.stop()
