"""Choosing whom to follow (issue 18 item 4): a click on a person in the debug page, through the
real daemon, a real Chromium (DevTools protocol mouse events) and the daemon's ZeroMQ messages; and
every refusal of POST /target over plain HTTP."""
import json
import os
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cdp import Browser
from conftest import require_program
from daemon_helpers import Daemon, Listener
from dataset_files import write_small_model
from detector.daemon.choice import Choice, ChoiceDesk, Refusal
from detector.daemon.tracker import PersonTracker
from detector.daemon.webserver import MAX_JSON_BYTES
from detector.model.decode import Detection

TOKEN = "choose-whom-to-follow-0123"
BIG = (0.3, 0.55, 0.3, 0.7)     # nearer, larger: the one locked at first (x, y, w, h, fractions of the frame)
SMALL = (0.72, 0.5, 0.18, 0.45)  # farther: the one a person at the page clicks on
FAULT_HOOKS = str(Path(__file__).parent / "fault_hooks")
ROOT = Path(__file__).resolve().parent.parent


def draw_person(image, box, shirt_bgr):
    """A figure filling `box`: a head, a shirt and trousers."""
    h_px, w_px = image.shape[:2]
    x, y, w, h = box
    left, top, right, bottom = (int(v) for v in ((x - w / 2) * w_px, (y - h / 2) * h_px,
                                                  (x + w / 2) * w_px, (y + h / 2) * h_px))
    height = bottom - top
    cv2.circle(image, ((left + right) // 2, top + height // 8), height // 9, (170, 190, 230), -1)
    cv2.rectangle(image, (left, top + height // 4), (right, top + height * 3 // 5), shirt_bgr, -1)
    cv2.rectangle(image, (left + (right - left) // 6, top + height * 3 // 5), (right - (right - left) // 6, bottom),
                  (90, 50, 40), -1)


def write_two_people_clip(path, frames=20, fps=10.0, size=(640, 480)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), 70, np.uint8)
        image[:, :, 0] += np.uint8(i)  # not a frozen picture
        draw_person(image, BIG, (40, 40, 200))
        draw_person(image, SMALL, (200, 120, 30))
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    """(weights, cfg, clip): a network that sees the two people where the clip shows them."""
    folder = tmp_path_factory.mktemp("two-people")
    weights, cfg = write_small_model(folder, 20, [(14, *BIG, 0.8), (14, *SMALL, 0.7)], "two-people")
    return weights, cfg, write_two_people_clip(folder / "two-people.avi")


def daemon_args(two_people, *extra):
    weights, cfg, clip = two_people
    return ["--weights", weights, "--cfg", cfg, "--source", clip, "--loop", *extra]


def near(message, box, tolerance=0.03):
    return message["found"] and all(abs(message[k] - v) <= tolerance for k, v in zip("xywh", box))


def followed(listener):
    """The newest person message."""
    people = listener.of("person")
    return people[-1] if people else None


def wait_following(listener, box, timeout=30):
    return listener.wait_for(lambda l: (m := followed(l)) is not None and near(m, box), timeout)


CHOICE_RESULT = "document.getElementById('choice-result').textContent"
TRACK_BOXES = "[...document.querySelectorAll('#tracks > div')]"


def rectangle(browser, element_id):
    """(left, top, width, height) of an element, in page coordinates (CSS pixels)."""
    return browser.evaluate(f"""(() => {{ const r = document.getElementById('{element_id}').getBoundingClientRect();
                                         return [r.left, r.top, r.width, r.height]; }})()""")


def test_a_click_on_a_person_in_the_page_makes_the_daemon_follow_them(two_people, tmp_path):
    chromium = require_program("chromium")
    with Daemon(*daemon_args(two_people), env={"ROBOT_DETECTOR_HTTP_TOKEN": TOKEN}) as daemon:
        listener = Listener(daemon.pub, topics=["person"])
        browser = None
        try:
            assert wait_following(listener, BIG, 60), daemon.process.poll() or followed(listener)
            big_id = followed(listener)["track_id"]
            browser = Browser(chromium, str(tmp_path / "profile"), 1000, 800)
            browser.open(f"{daemon.url}/?token={TOKEN}", ready=f"{TRACK_BOXES}.length === 2")
            boxes = browser.evaluate(f"{TRACK_BOXES}.map(b => [+b.dataset.trackId, b.className, b.firstChild.textContent])")
            [(target_id, _, target_label)] = [b for b in boxes if b[1] == "target"]
            [(other_id, _, other_label)] = [b for b in boxes if b[1] != "target"]
            assert target_id == big_id and target_label == f"#{big_id} followed", boxes
            assert other_label == f"#{other_id}", boxes
            # where the smaller person stands in the camera image, in page coordinates
            browser.wait_for("document.getElementById('stream').getBoundingClientRect().width > 100")
            left, top, width, height = rectangle(browser, "stream")
            x, y, w, h = SMALL
            listener.messages.clear()
            browser.click((left + x * width, top + (y + h / 4) * height))  # on the shirt, below the centre
            assert wait_following(listener, SMALL, 20), followed(listener)
            assert followed(listener)["track_id"] == other_id and followed(listener)["state"] == "tracking"
            browser.wait_for(f"""document.querySelector('#tracks > div[data-track-id="{other_id}"]')
                                 .className === 'target'""", 10)  # the page marks the choice
            assert browser.evaluate(CHOICE_RESULT) == f"following #{other_id}"
            time.sleep(1.0)  # the choice holds, frame after frame, although the other person is larger
            assert all(near(m, SMALL) and m["track_id"] == other_id for m in listener.of("person")[-5:])
            # "follow nobody": released, nobody is followed (auto mode: until relock_s has passed)
            left, top, width, height = rectangle(browser, "release")
            listener.messages.clear()
            browser.click((left + width / 2, top + height / 2))
            assert listener.wait_for(lambda l: (m := followed(l)) is not None and not m["found"], 10), \
                followed(listener)
            assert followed(listener)["state"] == "lost" and followed(listener)["track_id"] is None
            browser.wait_for(f"{CHOICE_RESULT} === 'following nobody'", 10)
        finally:
            if browser:
                browser.close()
            listener.close()


# --- POST /target over plain HTTP ---

def post(port, body=b"", headers=(), path="/target", host="127.0.0.1", content_length=True):
    """(status, headers text, body) of one POST over a raw socket (so that any header can be sent)."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    if content_length:
        head.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while (chunk := s.recv(65536)):
            data += chunk
    head, _, answer = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), answer


JSON = ("Content-Type", "application/json")
AUTH = ("Authorization", f"Bearer {TOKEN}")


def error_of(answer):
    message = json.loads(answer)["error"]
    assert isinstance(message, str) and "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def daemon(two_people, tmp_path_factory):
    log = tmp_path_factory.mktemp("daemon") / "daemon.log"
    with Daemon(*daemon_args(two_people), "--log-level", "debug", env={"ROBOT_DETECTOR_HTTP_TOKEN": TOKEN},
                log_path=log) as daemon:
        listener = Listener(daemon.pub, topics=["person"])
        daemon.listener = listener
        try:
            assert wait_following(listener, BIG, 60), log.read_text()
            yield daemon
        finally:
            listener.close()
        assert "Traceback" not in log.read_text()


def tracks(daemon):
    status, _, body = get_json(daemon, "/tracks.json")
    assert status == 200
    return json.loads(body)


def get_json(daemon, path):
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", daemon.http_port), timeout=20) as s:
        s.sendall(head.encode())
        data = b""
        while (chunk := s.recv(65536)):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), body


def test_tracks_json_lists_every_track_and_the_target(daemon):
    shown = tracks(daemon)
    assert shown["state"] == "tracking" and isinstance(shown["seq"], int)
    by_box = {round(t["x"], 1): t for t in shown["tracks"]}
    assert set(by_box) == {0.3, 0.7}, shown
    assert by_box[0.3]["target"] and not by_box[0.7]["target"] and shown["target"] == by_box[0.3]["track_id"]
    assert all(t["state"] == "tracking" and abs(t["w"] * t["h"] - 0.21 * (1 if t["x"] < 0.5 else 0.39)) < 0.03
               for t in shown["tracks"]), shown
    status, _, _ = post(daemon.http_port, b"{}", path="/tracks.json", headers=[AUTH, JSON])
    assert status == 405


@pytest.mark.parametrize("body, expected", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b'{"track_id": NaN}', "not a number JSON allows"),
    (b"[1]", "one key"),
    (b"{}", "one key"),
    (b'{"track_id": 1, "release": true}', "one key"),
    (b'{"track_id": "1"}', "integer"),
    (b'{"track_id": true}', "integer"),
    (b'{"track_id": 1.0}', "integer"),
    (b'{"track_id": null}', "integer"),
    (b'{"release": false}', "release to be true"),
    (b'{"follow": 1}', "track_id"),
])
def test_bad_bodies_are_refused_with_a_clear_error(daemon, body, expected):
    before = followed(daemon.listener)["track_id"]
    status, head, answer = post(daemon.http_port, body, [JSON, AUTH])
    assert status == 400 and "application/json" in head
    assert expected in error_of(answer)
    time.sleep(0.3)
    assert followed(daemon.listener)["track_id"] == before  # nothing changed


def test_refusals_of_who_may_post_and_how(daemon):
    port = daemon.http_port
    good = json.dumps({"track_id": tracks(daemon)["target"]}).encode()
    assert post(port, good, [JSON])[0] == 401                                           # no token
    assert post(port, good, [JSON, ("Authorization", "Bearer wrong")])[0] == 401
    assert post(port, good, [JSON, AUTH], host="evil.example")[0] == 403                # DNS rebinding
    assert post(port, good, [JSON, AUTH, ("Origin", "http://evil.example")])[0] == 403  # another site's page
    assert post(port, good, [JSON, AUTH, ("Origin", "null")])[0] == 403
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, _, answer = post(port, good, [("Content-Type", content_type), AUTH])
        assert status == 415 and "application/json" in error_of(answer), content_type  # what a form can send
    status, _, answer = post(port, good, [AUTH])
    assert status == 415 and "found 'none'" in error_of(answer)
    status, _, answer = post(port, good, [JSON, AUTH], content_length=False)
    assert status == 411 and "Content-Length" in error_of(answer)
    # refused on the declared length, unread; the body is not sent (the closed connection would meet a
    # client still sending it with EPIPE or a reset before the answer is read)
    status, _, answer = post(port, b"", [JSON, AUTH, ("Content-Length", str(MAX_JSON_BYTES + 1))], content_length=False)
    assert status == 413 and str(MAX_JSON_BYTES) in error_of(answer)
    status, _, answer = post(port, b"", [JSON, AUTH, ("Content-Length", "-5")], content_length=False)
    assert status == 411
    status, _, answer = post(port, good, [JSON, AUTH], path="/stream.mjpg")
    assert status == 405
    # another site's script must first ask (CORS preflight); it is never granted
    preflight = (f"OPTIONS /target HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n"
                 "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n"
                 "Connection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(preflight.encode())
        answer = s.makefile("rb").read()
    assert answer.split()[1] != b"200" and b"access-control-allow" not in answer.lower(), answer[:200]
    # the page's own request: same origin, token in the query, JSON with a charset
    origin = ("Origin", f"http://127.0.0.1:{port}")
    status, _, answer = post(port, good, [("Content-Type", "application/json; charset=utf-8"), origin],
                             path=f"/target?token={TOKEN}")
    assert status == 200 and json.loads(answer) == {"target": json.loads(good)["track_id"], "released": False}


def test_unknown_track_then_a_choice_then_release(daemon):
    port = daemon.http_port
    shown = tracks(daemon)
    ids = sorted(t["track_id"] for t in shown["tracks"])
    status, _, answer = post(port, json.dumps({"track_id": max(ids) + 100}).encode(), [JSON, AUTH])
    assert status == 404 and f"no track {max(ids) + 100}" in error_of(answer)
    assert all(str(i) in error_of(answer) for i in ids)  # it says which tracks there are
    [small_id] = [t["track_id"] for t in shown["tracks"] if not t["target"]]
    status, _, answer = post(port, json.dumps({"track_id": small_id}).encode(), [JSON, AUTH])
    assert status == 200 and json.loads(answer) == {"target": small_id, "released": False}
    # the answer comes after the loop applied it: the next frames follow the smaller person
    daemon.listener.messages.clear()
    assert wait_following(daemon.listener, SMALL, 10)
    assert tracks(daemon)["target"] == small_id
    status, _, answer = post(port, b'{"release": true}', [JSON, AUTH])
    assert status == 200 and json.loads(answer) == {"target": None, "released": True}
    t_release = time.monotonic()
    daemon.listener.messages.clear()
    # auto mode: nobody for relock_s (2 s), then the largest person again
    assert daemon.listener.wait_for(lambda l: (m := followed(l)) is not None and near(m, BIG), 15)
    relocked_after = time.monotonic() - t_release
    people = daemon.listener.of("person")
    assert not people[0]["found"] and people[0]["state"] == "lost"
    assert relocked_after >= 1.8, relocked_after
    assert not any(near(m, SMALL) for m in people)  # never the other person meanwhile


def test_a_choice_without_frames_is_refused(tmp_path):
    """The camera hangs: the loop takes no choice, so the request gets 503 after the wait."""
    env = {"PYTHONPATH": os.pathsep.join([FAULT_HOOKS, str(ROOT)]), "ROBOT_DETECTOR_TEST_FAULT": "capture-hang:30"}
    with Daemon("--demo", env=env) as daemon:
        listener = Listener(daemon.pub, topics=["person", "status"])
        try:
            assert listener.wait_for(lambda l: any(s["state"] == "camera_lost" for s in l.of("status")), 60)
            followed_before = followed(listener)
            assert followed_before["found"]
            t0 = time.monotonic()
            status, _, answer = post(daemon.http_port, b'{"release": true}', [JSON])
            assert status == 503 and "nothing was changed" in error_of(answer)
            assert 1.5 <= time.monotonic() - t0 < 10
        finally:
            listener.close()


def test_a_refused_choice_is_withdrawn_not_applied_when_frames_come_back():
    """The desk between the HTTP threads and the loop, with the daemon's tracker: a choice the loop
    did not take in time is never applied later (no surprise switch when the camera comes back)."""
    desk, tracker = ChoiceDesk(), PersonTracker(appearance=False)
    people = [Detection("person", 14, 0.8, *BIG), Detection("person", 14, 0.7, *SMALL)]
    tracked = tracker.update(0.0, people)
    desk.show(0, 0.0, tracked)
    small_id = tracked.track_ids[1]
    with pytest.raises(Refusal) as refused:
        desk.request(Choice(small_id), timeout_s=0.05)
    assert refused.value.status == 503
    desk.apply(tracker)
    assert tracker.update(0.1, people).target.track_id == tracked.target.track_id != small_id
    # taken in time, from another thread, it is applied between two frames
    answer = threading.Thread(target=desk.request, args=(Choice(small_id),))
    answer.start()
    while answer.is_alive():
        desk.apply(tracker)
        answer.join(0.01)
    assert tracker.update(0.2, people).target.track_id == small_id


def test_manual_mode_follows_only_whom_the_user_chooses(two_people):
    """lock = "manual": nobody until a choice; after a release nobody again, also past relock_s."""
    with Daemon(*daemon_args(two_people, "--lock", "manual", "--relock-s", "1")) as daemon:
        listener = Listener(daemon.pub, topics=["person"])
        try:
            assert listener.wait_for(lambda l: len(l.of("person")) >= 10, 60)
            assert not any(m["found"] for m in listener.of("person"))
            shown = tracks(daemon)
            assert shown["target"] is None and len(shown["tracks"]) == 2, shown
            [small_id] = [t["track_id"] for t in shown["tracks"] if t["x"] > 0.5]
            status, _, _ = post(daemon.http_port, json.dumps({"track_id": small_id}).encode(), [JSON])
            assert status == 200
            listener.messages.clear()
            assert wait_following(listener, SMALL, 10) and followed(listener)["track_id"] == small_id
            assert post(daemon.http_port, b'{"release": true}', [JSON])[0] == 200
            listener.messages.clear()
            time.sleep(2.5)  # well past relock_s
            people = listener.of("person")
            assert len(people) >= 10 and not any(m["found"] for m in people), people[-1]
        finally:
            listener.close()
