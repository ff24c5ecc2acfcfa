"""The frozen-source criterion (detector.freeze) on real and generated pictures: live pictures never
count as frozen, a repeated picture does, after exactly `frozen_s`."""
import time

import cv2
import numpy as np
import pytest

from conftest import run_cli
from daemon_helpers import Daemon, Listener, MjpegServer
from detector.freeze import FreezeWatch, same_picture
from robot_client import protocol

FRAME_S = 0.1  # frame period of the sequences below (10 fps)


def frozen_flags(frames, frozen_s):
    watch = FreezeWatch(frozen_s)
    return [watch.frozen(image, index * FRAME_S) for index, image in enumerate(frames)]


def gradient_scene(size=(640, 480)):
    """A noiseless scene: a horizontal ramp with two flat boxes (one near white)."""
    width, height = size
    scene = np.dstack([np.tile(np.linspace(40, 200, width), (height, 1))] * 3).astype(np.float32)
    cv2.rectangle(scene, (100, 100), (300, 400), (60, 60, 200), -1)
    cv2.rectangle(scene, (400, 50), (600, 200), (250, 250, 250), -1)
    return scene


def noisy(scene, sigma, rng, jpeg_quality=None):
    image = np.clip(np.rint(scene + rng.normal(0, sigma, scene.shape)), 0, 255).astype(np.uint8)
    if jpeg_quality:
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1], cv2.IMREAD_COLOR)
    return image


def test_the_real_h264_clip_is_never_frozen(media):
    """Every consecutive pair of the pedestrian clip, judged with frozen_s = 0: a single pair within
    one level everywhere would count."""
    capture = cv2.VideoCapture(str(media / "vtest_opencv.avi"))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    assert len(frames) > 700
    assert not any(frozen_flags(frames, 0.0))


def test_a_small_region_moving_in_a_noiseless_scene_is_never_frozen():
    scene = gradient_scene().astype(np.uint8)
    frames = []
    for index in range(30):
        image = scene.copy()
        image[240:242, 320 + index:322 + index] = 0  # a 2x2 dot moving one pixel a frame
        frames.append(image)
    assert not any(frozen_flags(frames, 0.0))


def test_a_still_scene_with_sensor_noise_is_never_frozen():
    """Half a level of noise (a well-lit webcam has more), raw and through JPEG as an IP camera sends it."""
    rng = np.random.default_rng(1)
    scene = gradient_scene()
    for quality in (None, 95, 80):
        frames = [noisy(scene, 0.5, rng, quality) for _ in range(30)]
        assert not any(frozen_flags(frames, 0.0)), quality


def test_a_repeated_picture_is_frozen_after_frozen_s():
    rng = np.random.default_rng(2)
    picture = noisy(gradient_scene(), 2.0, rng)
    # the camera re-encodes its last picture: values move by at most one level
    jitter = rng.integers(-1, 2, picture.shape)
    reencoded = np.clip(picture.astype(int) + jitter, 0, 255).astype(np.uint8)
    assert same_picture(picture, reencoded) and not np.array_equal(picture, reencoded)
    fresh = [noisy(gradient_scene(), 2.0, rng) for _ in range(5)]
    frames = fresh + [picture] + [picture, reencoded] * 8
    flags = frozen_flags(frames, 1.0)
    first = flags.index(True)
    assert (first - len(fresh)) * FRAME_S == 1.0  # 1.0 s after the picture first showed
    assert all(flags[first:])
    flags_after_change = frozen_flags(frames + fresh[:1] + [fresh[0]] * 3, 1.0)
    assert flags_after_change[-4:] == [False] * 4  # a new picture ends the freeze; its own second has not passed


@pytest.mark.parametrize("buffers", [2, 3, 4])
def test_a_driver_cycling_through_its_old_buffers_is_frozen(buffers):
    """A stuck driver re-delivering its few buffers (A, B, A, B...) was never frozen: each frame was
    compared only with the picture before it. Frozen frozen_s after the last of them first showed."""
    rng = np.random.default_rng(3)
    fresh = [noisy(gradient_scene(), 2.0, rng) for _ in range(5)]
    stale = [noisy(gradient_scene(), 2.0, rng) for _ in range(buffers)]
    frames = fresh + stale * (40 // buffers)
    flags = frozen_flags(frames, 1.0)
    first = flags.index(True)
    assert round((first - (len(fresh) + buffers - 1)) * FRAME_S, 6) == 1.0
    assert all(flags[first:])


def test_a_stream_restarting_at_a_picture_seen_before_its_loss_is_not_frozen_at_once():
    """A looping camera (the soak's test pattern) lost for 3 s comes back at its first picture, which
    was among the last ones before the loss: judged against the old time it was 'frozen' at its first
    frame, and every reopen then met the same picture again (the daemon never recovered). After a
    loss the pictures are judged from the reopen; one that comes back still is frozen frozen_s later."""
    rng = np.random.default_rng(4)
    pattern = [noisy(gradient_scene(), 2.0, rng) for _ in range(6)]
    watch = FreezeWatch(1.0)
    assert not any(watch.frozen(image, index * FRAME_S) for index, image in enumerate(pattern[2:] + pattern[:2]))
    t_back = 4.0  # the stream restarts at pattern[0], which is among the last four pictures
    stale = FreezeWatch(1.0)
    for index, image in enumerate(pattern[2:] + pattern[:2]):
        stale.frozen(image, index * FRAME_S)
    assert stale.frozen(pattern[0], t_back)  # without the reopen: frozen at the first frame
    watch.reopened(t_back)
    assert not any(watch.frozen(image, t_back + index * FRAME_S) for index, image in enumerate(pattern * 3))
    still = FreezeWatch(1.0)
    for index, image in enumerate(pattern):
        still.frozen(image, index * FRAME_S)
    still.reopened(t_back)  # it comes back showing its last picture, and only that
    flags = [still.frozen(pattern[-1], t_back + index * FRAME_S) for index in range(15)]
    assert flags.index(True) * FRAME_S == pytest.approx(1.0) and all(flags[10:])


def test_a_slow_drift_is_change_once_it_adds_up():
    """Compared with the picture as it was when it last changed, not with the frame before: one level
    a frame is change every second frame."""
    picture = gradient_scene().astype(np.uint8)
    frames = [np.clip(picture.astype(int) + step, 0, 255).astype(np.uint8) for step in range(30)]
    assert not any(frozen_flags(frames, 0.15))


def test_another_frame_size_is_a_change():
    picture = gradient_scene().astype(np.uint8)
    assert not same_picture(picture, picture[:240])
    assert frozen_flags([picture, picture[:240], picture[:240]], 0.1) == [False, False, True]


# --- through the real daemon: a network camera (MJPEG over HTTP) that freezes ---

def person_weights_file(tmp_path):
    """Weights whose network reports a person whatever the picture: only the freeze can end `found`."""
    from darknet_files import make_params, person_last_layer, write_weights
    path = tmp_path / "p.weights"
    write_weights(path, make_params("yolov1-tiny", 1, person_last_layer("yolov1-tiny", .5, .5, .2, .2)))
    return path


def test_a_frozen_network_camera_is_camera_lost_found_false_and_reopened(tmp_path):
    camera = MjpegServer(fps=10).start()
    with Daemon("--source", camera.url, "--weights", person_weights_file(tmp_path), log_path=tmp_path / "log") as daemon:
        listener = Listener(daemon.pub, topics=["status", "person"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 10, 60)
            assert all(m["found"] for m in listener.of("person"))
            camera.frozen = True  # from now on the camera resends its last picture
            t_frozen = time.monotonic()
            connections = camera.connections
            assert listener.wait_for(lambda l: not l.of("person")[-1]["found"], 10)
            t_found_false = next(t for topic, raw, t in listener.messages
                                 if topic == "person" and not protocol.decode(raw)[1]["found"])
            lost = next(s for s in listener.of("status") if s["state"] == "camera_lost")
            assert lost["reason"] == "frozen"
            time.sleep(1.5)  # reopened with backoff; each new connection still shows the frozen picture
            assert camera.connections > connections
            assert listener.of("status")[-1]["state"] == "camera_lost"
            assert [m["found"] for m in listener.of("person")].count(False) == 1  # then no frame, no message
            camera.frozen = False  # the camera works again
            assert listener.wait_for(lambda l: l.of("status")[-1]["state"] == "running"
                                     and l.of("person")[-1]["found"], 15)
        finally:
            listener.close()
            camera.stop()
    assert t_found_false - t_frozen <= 1.5, t_found_false - t_frozen
    assert listener.of("status")[-1]["reason"] is None or listener.of("status")[-1]["state"] == "stopping"
    assert "froze: its picture has not changed for 1.0 s" in daemon.stderr and "Traceback" not in daemon.stderr


def clip_frames(media, count):
    capture = cv2.VideoCapture(str(media / "vtest_opencv.avi"))
    frames = [capture.read()[1] for _ in range(count)]
    assert all(frame is not None for frame in frames)
    return frames


@pytest.mark.parametrize("scene", ["clip", "noisy still"])
def test_live_pictures_through_the_daemon_are_never_frozen(tmp_path, request, scene):
    """The shortest frozen_s (0.3 s) on the real clip and on a still scene with half a level of sensor
    noise, both served as an IP camera serves them (MJPEG over HTTP)."""
    if scene == "clip":
        frames = clip_frames(request.getfixturevalue("media"), 100)
        picture = lambda index: frames[index % len(frames)]  # noqa: E731
    else:
        rng, still = np.random.default_rng(3), gradient_scene((320, 240))
        picture = lambda index: noisy(still, 0.5, rng)  # noqa: E731
    camera = MjpegServer(fps=10, picture=picture).start()
    config = tmp_path / "frozen.toml"
    config.write_text("frozen_s = 0.3\n")
    with Daemon("--config", config, "--source", camera.url, "--weights", person_weights_file(tmp_path),
                http=False, log_path=tmp_path / "log") as daemon:
        listener = Listener(daemon.pub, topics=["status", "person"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 60, 90)
        finally:
            listener.close()
            camera.stop()
    assert all(m["found"] for m in listener.of("person"))
    assert not any(s.get("reason") == "frozen" for s in listener.of("status"))
    assert "froze" not in daemon.stderr


@pytest.mark.parametrize("toml, shown", [("frozen_s = 0.2\n", "0.2"), ("frozen_s = 5.5\n", "5.5"),
                                         ("frozen_s = nan\n", "nan"), ('frozen_s = "1"\n', "'1'")])
def test_frozen_s_out_of_its_range_exits_78_with_one_line(tmp_path, toml, shown):
    """0.3 to 5 s: shorter takes a camera of a few frames a second for frozen, longer follows a stale
    picture for longer."""
    config = tmp_path / "bad.toml"
    config.write_text('source = "synthetic"\n' + toml)
    result = run_cli("run", "--config", config)
    assert result.returncode == 78 and result.stderr.count("\n") == 1, result.stderr
    assert "'frozen_s'" in result.stderr and shown in result.stderr, result.stderr
