"""`robot-detector label`: the labelling server as a user starts it, reached over real HTTP; its
files (label, review record, undo history) and its refusals."""
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli
from label_files import BOX_A, BOX_WRONG, CLASSES, LABELS, snapshot, write_label_dataset

SCRIPT = str(Path(sys.executable).parent / "robot-detector")
TOKEN = "label-page-token-0123456789"


class LabelServer:
    """`robot-detector label DATASET ...` on a free port; `.url` says where."""

    def __init__(self, dataset, *args, env=None):
        environment = {k: v for k, v in os.environ.items() if k != "ROBOT_DETECTOR_HTTP_TOKEN"}
        self.process = subprocess.Popen([SCRIPT, "label", str(dataset), *map(str, args)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env={**environment, **(env or {})})
        line = self.process.stdout.readline()
        match = re.search(r"http://([\d.]+):(\d+)/", line)
        if not match:
            self.process.kill()
            raise AssertionError(f"no address in {line!r}: {self.process.stderr.read()}")
        self.port = int(match.group(2))
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.process.terminate()
        self.process.wait(10)
        return self.process.stderr.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def request(url, body=None, headers=None, raw=None, method=None):
    """(status, parsed JSON or text) of one request; a JSON body unless `raw` bytes are given."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


@pytest.fixture()
def dataset(tmp_path):
    return write_label_dataset(tmp_path / "robot-view")


def labels_text(root, name):
    return (root / "labels" / f"{name}.txt").read_text()


def test_write_review_undo_and_conflict(dataset):
    with LabelServer(dataset, "--http", "127.0.0.1:0") as server:
        status, summary = request(server.url + "/api/dataset")
        assert status == 200 and summary["classes"] == list(CLASSES)
        assert [e["name"] for e in summary["images"]] == [f"{n}.jpg" for n in LABELS]
        status, state = request(server.url + "/api/labels?name=000001.jpg")
        assert status == 200 and [b["confidence"] for b in state["boxes"]] == [0.91, 0.15]
        assert not state["reviewed"]
        # a change, then an accept: both on the undo history; the review record says reviewed
        status, state = request(server.url + "/api/labels", {"name": "000001.jpg", "version": state["version"],
                                "boxes": [{"class_id": 2, "box": [0.25, 0.5, 0.1, 0.2]}]})
        assert status == 200, state
        assert labels_text(dataset, "000001") == "2 0.250000 0.500000 0.100000 0.200000\n"
        assert state["boxes"] == [{"class_id": 2, "box": [0.25, 0.5, 0.1, 0.2], "confidence": None}]
        status, state = request(server.url + "/api/labels", {"name": "000001.jpg", "version": state["version"],
                                "boxes": state["boxes"], "reviewed": True})
        assert status == 200 and state["reviewed"] and state["undo"] == 2
        record = json.loads((dataset / "labels" / "000001.review.json").read_text())
        assert record["reviewed"] and record["reviewed_at"].endswith("Z")
        assert request(server.url + "/api/dataset")[1]["images"][1]["reviewed"]
        status, state = request(server.url + "/api/undo", {"name": "000001.jpg", "version": state["version"]})
        assert status == 200 and not state["reviewed"]
        assert labels_text(dataset, "000001") == "2 0.250000 0.500000 0.100000 0.200000\n"
        status, state = request(server.url + "/api/undo", {"name": "000001.jpg", "version": state["version"]})
        assert status == 200 and labels_text(dataset, "000001") == BOX_A + BOX_WRONG
        assert [b["confidence"] for b in state["boxes"]] == [0.91, 0.15]  # collect's boxes again
        status, answer = request(server.url + "/api/undo", {"name": "000001.jpg", "version": state["version"]})
        assert status == 409 and "nothing to undo" in answer["error"]
        # another program changes the file: a change made on the old version is refused, not merged
        (dataset / "labels" / "000001.txt").write_text("1 0.5 0.5 0.5 0.5\n")
        before = snapshot(dataset)
        status, answer = request(server.url + "/api/labels", {"name": "000001.jpg", "version": state["version"],
                                 "boxes": []})
        assert status == 409 and "changed by another program" in answer["error"], answer
        assert snapshot(dataset) == before
        status, state = request(server.url + "/api/labels?name=000001.jpg")
        assert state["boxes"] == [{"class_id": 1, "box": [0.5, 0.5, 0.5, 0.5], "confidence": None}]


def test_abuse_is_refused_with_a_clear_error_and_changes_no_file(dataset):
    with LabelServer(dataset, "--http", "127.0.0.1:0") as server:
        version = request(server.url + "/api/labels?name=000001.jpg")[1]["version"]
        before = snapshot(dataset)
        good_box = {"class_id": 0, "box": [0.5, 0.5, 0.2, 0.2]}
        refused = [  # (body or raw bytes, headers, status, words in the message)
            ({"name": "../../etc/passwd", "version": version, "boxes": [good_box]}, {}, 404, "not an image of this dataset"),
            ({"name": "/etc/passwd", "version": version, "boxes": [good_box]}, {}, 404, "not an image of this dataset"),
            ({"name": "images/../classes.txt", "version": version, "boxes": []}, {}, 404, "not an image"),
            ({"name": "000001.jpg", "version": version, "boxes": [{"class_id": 3, "box": [0.5, 0.5, 0.2, 0.2]}]}, {},
             400, "class id 3 is out of range: this dataset has 3 classes"),
            ({"name": "000001.jpg", "version": version, "boxes": [{"class_id": -1, "box": [0.5, 0.5, 0.2, 0.2]}]}, {},
             400, "out of range"),
            ({"name": "000001.jpg", "version": version, "boxes": [{"class_id": 0, "box": [0.5, -0.1, 0.2, 0.2]}]}, {},
             400, "between 0 and 1, found -0.1"),
            ({"name": "000001.jpg", "version": version, "boxes": [{"class_id": 0, "box": [0.5, 0.5, -0.2, 0.2]}]}, {},
             400, "between 0 and 1, found -0.2"),
            ({"name": "000001.jpg", "version": version, "boxes": [{"class_id": 0, "box": [0.5, 0.5, 0, 0.2]}]}, {},
             400, "above 0"),
            (b'{"name": "000001.jpg", "version": "%s", "boxes": [{"class_id": 0, "box": [0.5, 1e999, 0.2, 0.2]}]}'
             % version.encode(), {}, 400, "found inf"),
            (b'{"name": "000001.jpg", "version": "%s", "boxes": [{"class_id": 0, "box": [0.5, NaN, 0.2, 0.2]}]}'
             % version.encode(), {}, 400, "NaN is not a number JSON allows"),
            ({"name": "000001.jpg", "version": version, "boxes": [{"class_id": True, "box": [0.5, 0.5, 0.2, 0.2]}]}, {},
             400, "'class_id' must be a whole number"),
            ({"name": "000001.jpg", "version": version, "boxes": [good_box], "reviewed": "yes"}, {}, 400, "'reviewed'"),
            (b"name=000001.jpg&boxes=", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
            (b"{}", {"Content-Type": "text/plain"}, 415, "application/json"),
            (b"{not json", {}, 400, "not valid JSON"),
            ({"name": "000001.jpg", "version": version, "boxes": [good_box]}, {"Host": "attacker.example:8090"}, 403,
             "Host"),
        ]
        for body, headers, status, words in refused:
            raw = body if isinstance(body, bytes) else None
            got, answer = request(server.url + "/api/labels", None if raw else body, headers, raw=raw)
            message = answer["error"] if isinstance(answer, dict) else answer
            assert got == status and words in message, (body, got, answer)
        # Too large: refused on its Content-Length, before the body is read. The body is not sent here:
        # a client still sending 2 MiB may meet the closed connection (EPIPE) before it reads the answer.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            raw.sendall(b"POST /api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % (1 << 21))
            answer = b""
            while b"at most" not in answer and (chunk := raw.recv(4096)):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 413 ") and b"at most 1048576 bytes" in answer, answer
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:  # no Content-Length
            raw.sendall(b"POST /api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
            assert raw.recv(4096).startswith(b"HTTP/1.1 411 ")
        status, answer = request(server.url + "/image?name=../classes.txt")
        assert status == 404 and "not an image of this dataset" in answer["error"]
        assert snapshot(dataset) == before


def test_token_off_loopback(dataset, tmp_path):
    refused = run_cli("label", dataset, "--http", "0.0.0.0:0")
    assert refused.returncode == 78 and "--http-token" in refused.stderr and "Traceback" not in refused.stderr
    config = tmp_path / "label.toml"
    config.write_text(f'http_token = "{TOKEN}"\n')
    for how in ({"env": {"ROBOT_DETECTOR_HTTP_TOKEN": TOKEN}}, {"args": ["--config", config]}):
        with LabelServer(dataset, "--http", "0.0.0.0:0", *how.get("args", []), env=how.get("env")) as server:
            before = snapshot(dataset)
            version = request(server.url + f"/api/labels?name=000001.jpg&token={TOKEN}")[1]["version"]
            body = {"name": "000001.jpg", "version": version, "boxes": []}
            assert request(server.url + "/api/labels", body)[0] == 401
            assert request(server.url + "/api/labels", body, {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
            assert request(server.url + "/api/dataset")[0] == 401
            assert request(server.url + "/")[0] == 401
            assert snapshot(dataset) == before
            status, state = request(server.url + "/api/labels", body, {"Authorization": f"Bearer {TOKEN}"})
            assert status == 200 and labels_text(dataset, "000001") == ""
            request(server.url + "/api/undo", {"name": "000001.jpg", "version": state["version"]},
                    {"Authorization": f"Bearer {TOKEN}"})
            assert labels_text(dataset, "000001") == BOX_A + BOX_WRONG


def test_bad_datasets_and_damaged_label_files(tmp_path, dataset):
    result = run_cli("label", tmp_path / "nowhere")
    assert result.returncode == 1 and "found no images/ folder" in result.stderr
    (dataset / "labels" / "000002.txt").write_text("2 0.5 0.5 0.2\n")
    with LabelServer(dataset, "--http", "127.0.0.1:0") as server:
        status, state = request(server.url + "/api/labels?name=000002.jpg")
        assert status == 200 and "000002.txt:1: expected 5 fields" in state["problem"]
        before = snapshot(dataset)
        status, answer = request(server.url + "/api/labels", {"name": "000002.jpg", "version": state["version"],
                                 "boxes": []})
        assert status == 409 and "fix the file" in answer["error"] and snapshot(dataset) == before


def test_undo_never_overwrites_another_programs_change(dataset):
    with LabelServer(dataset, "--http", "127.0.0.1:0") as server:
        version = request(server.url + "/api/labels?name=000001.jpg")[1]["version"]
        status, state = request(server.url + "/api/labels", {"name": "000001.jpg", "version": version,
                                "boxes": [{"class_id": 0, "box": [0.5, 0.5, 0.2, 0.4]}]})
        assert status == 200, state
        editor_text = "0 0.1 0.1 0.1 0.1\n0 0.9 0.9 0.1 0.1\n"
        (dataset / "labels" / "000001.txt").write_text(editor_text)  # an editor, after the page's change
        status, state = request(server.url + "/api/labels?name=000001.jpg")  # the page reloads: shows the editor's
        assert status == 200 and len(state["boxes"]) == 2 and state["undo"] == 1
        before = snapshot(dataset)
        status, answer = request(server.url + "/api/undo", {"name": "000001.jpg", "version": state["version"]})
        assert status == 409 and "no longer what this page's last change wrote" in answer["error"], answer
        assert snapshot(dataset) == before and labels_text(dataset, "000001") == editor_text
        # a change made on the editor's file can be undone, back to the editor's text
        status, state = request(server.url + "/api/labels", {"name": "000001.jpg", "version": state["version"],
                                "boxes": []})
        assert status == 200 and labels_text(dataset, "000001") == ""
        status, state = request(server.url + "/api/undo", {"name": "000001.jpg", "version": state["version"]})
        assert status == 200 and labels_text(dataset, "000001") == editor_text


def test_images_sharing_a_label_file_are_refused_at_start(dataset):
    (dataset / "images" / "000001.png").write_bytes((dataset / "images" / "000001.jpg").read_bytes())
    before = snapshot(dataset)
    result = run_cli("label", dataset, "--http", "127.0.0.1:0")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "000001.jpg" in message and "000001.png" in message, message
    assert "shares its label file" in message and "000001.txt" in message
    assert snapshot(dataset) == before


def test_unreadable_label_files_are_shown_not_overwritten(dataset):
    (dataset / "labels" / "000002.txt").write_bytes(b"2 0.5 0.5 0.2 0.2\xff\xfe\n")
    (dataset / "labels" / "000003.txt").unlink()
    (dataset / "labels" / "000003.txt").mkdir()  # a folder where the label file belongs
    with LabelServer(dataset, "--http", "127.0.0.1:0") as server:
        status, summary = request(server.url + "/api/dataset")
        assert status == 200 and len(summary["images"]) == len(LABELS)
        before = snapshot(dataset)
        for name, words in (("000002.jpg", "not UTF-8 text"), ("000003.jpg", "cannot be read")):
            status, state = request(server.url + f"/api/labels?name={name}")
            assert status == 200 and words in state["problem"], state
            status, answer = request(server.url + "/api/labels", {"name": name, "version": state["version"],
                                     "boxes": []})
            assert status == 409 and words in answer["error"], answer
            status, answer = request(server.url + "/api/undo", {"name": name, "version": state["version"]})
            assert status == 409, answer
        assert snapshot(dataset) == before and (dataset / "labels" / "000003.txt").is_dir()
        errors = server.stop()
    assert "Traceback" not in errors, errors
