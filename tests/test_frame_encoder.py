"""The debug stream's frame encoder alone: a viewer is a `with` block, frames are encoded only while
one is open, each frame once however many watch, and a stopped encoder ends every viewer."""
import threading
import time

import numpy as np

from detector.daemon.frame_encoder import FrameEncoder
from detector.model.decode import Detection

FRAME = np.full((60, 80, 3), 90, np.uint8)
PERSON = Detection("person", 14, 0.9, 0.5, 0.5, 0.2, 0.4)


def wait_until(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_frames_are_encoded_once_and_only_while_someone_watches():
    encoder = FrameEncoder(lambda seq: [f"frame {seq}"]).start()
    try:
        encoder.offer(0, FRAME, [PERSON], PERSON)
        time.sleep(0.3)
        assert encoder.frames_encoded == 0 and encoder.viewers == 0  # nobody watches: no work
        received = [[], []]

        def watch(into):
            with encoder.viewer() as jpegs:
                for jpeg in jpegs:
                    into.append(jpeg)
                    if len(into) == 2:
                        return

        viewers = [threading.Thread(target=watch, args=(into,)) for into in received]
        for viewer in viewers:
            viewer.start()
        wait_until(lambda: encoder.viewers == 2 and encoder.frames_encoded == 1)
        encoder.offer(1, FRAME, [PERSON], None)
        for viewer in viewers:
            viewer.join(5)
        assert [len(into) for into in received] == [2, 2] and received[0] == received[1]
        assert all(jpeg[:2] == b"\xff\xd8" for jpeg in received[0])
        assert encoder.frames_encoded == 2  # two frames, two viewers: each frame encoded once
        assert encoder.viewers == 0  # leaving the `with` block ends the viewer
        encoder.offer(2, FRAME, [], None)
        time.sleep(0.3)
        assert encoder.frames_encoded == 2
        assert encoder.snapshot()[:2] == b"\xff\xd8" and encoder.frames_encoded == 3  # on demand
    finally:
        encoder.stop()


def test_stopping_ends_every_viewer():
    encoder = FrameEncoder(lambda seq: []).start()
    ended = threading.Event()

    def watch():
        with encoder.viewer() as jpegs:
            for _ in jpegs:
                pass
        ended.set()

    viewer = threading.Thread(target=watch)
    viewer.start()
    wait_until(lambda: encoder.viewers == 1)
    encoder.stop()
    assert ended.wait(3) and encoder.viewers == 0
