"""A person labelling with mouse and keyboard: headless Chromium, driven over the DevTools protocol
with real input events, edits a dataset through `robot-detector label`; the files on disk must then
hold exactly what was meant."""
import json

import cv2
import numpy as np

from cdp import Browser
from conftest import require_program
from label_files import LABELS, snapshot, write_label_dataset
from test_label import LabelServer


def read_labels(root, name):
    lines = (root / "labels" / f"{name}.txt").read_text().splitlines()
    return [(int(line.split()[0]), [float(v) for v in line.split()[1:]]) for line in lines if line.strip()]


def reviewed(root, name):
    path = root / "labels" / f"{name}.review.json"
    return path.exists() and json.loads(path.read_text())["reviewed"]


def test_labelling_with_mouse_and_keyboard(tmp_path):
    chromium = require_program("chromium")
    root = write_label_dataset(tmp_path / "robot-view")
    images_before = {p: p.read_bytes() for p in (root / "images").iterdir()}
    server = LabelServer(root, "--http", "127.0.0.1:0")
    browser = Browser(chromium, str(tmp_path / "profile"))
    try:
        def settle():
            browser.wait_for("document.body.dataset.busy === '0'")

        def on_image(name):
            browser.wait_for(f"document.body.dataset.busy === '0' && document.getElementById('name').textContent === '{name}'")

        browser.open(server.url + "/")
        on_image("000000.jpg")
        rect = browser.evaluate("(() => { const r = document.getElementById('canvas').getBoundingClientRect(); "
                                "return [r.left, r.top, r.width, r.height]; })()")
        left, top, width, height = rect
        assert width > 300 and height > 200, rect

        def at(x, y):  # a point of the picture, as fractions of its width and height
            return left + x * width, top + y * height

        # 000000 has no boxes: draw one by dragging, make it a dog (key 2), accept
        browser.drag(at(0.2, 0.3), at(0.6, 0.8))
        settle()
        browser.key("2")
        settle()
        browser.key("Enter")
        on_image("000001.jpg")
        shot = tmp_path / "labelling.png"
        browser.screenshot(shot)
        print(f"page screenshot: {shot}")
        # 000001: move the pre-filled person box, resize it by its corner and by keyboard, delete the wrong box
        browser.drag(at(0.3, 0.4), at(0.4, 0.45))            # centre (0.3, 0.4) -> (0.4, 0.45)
        settle()
        browser.drag(at(0.5, 0.6), at(0.55, 0.7))            # bottom-right corner (0.5, 0.6) -> (0.55, 0.7)
        settle()
        browser.key("ArrowRight", "shift")                   # one step wider (0.01)
        browser.key("ArrowDown")                             # one step down (0.01)
        settle()
        browser.key("Tab")                                   # the next box: the wrong one
        browser.key("Delete")
        settle()
        browser.key("Enter")
        on_image("000002.jpg")
        # 000002: take the previous image's boxes instead of its own, accept; then undo once (the accept)
        browser.key("c")
        settle()
        browser.key("Enter")
        on_image("000003.jpg")
        browser.key("z")
        on_image("000002.jpg")
        counter = browser.evaluate("document.getElementById('counter').dataset.reviewed + ' ' + "
                                   "document.getElementById('counter').textContent")

        tolerance = 2.0 / min(width, height)  # the mouse lands on whole pixels
        [(drawn_class, drawn)] = read_labels(root, "000000")
        assert drawn_class == 1 and np.allclose(drawn, [0.4, 0.55, 0.4, 0.5], atol=tolerance), drawn
        [(person_class, person)] = read_labels(root, "000001")
        # moved to (0.4, 0.45); corner drag: left 0.3, top 0.3, right 0.55, bottom 0.7; then 0.01 wider, 0.01 lower
        assert person_class == 0 and np.allclose(person, [0.43, 0.51, 0.26, 0.4], atol=tolerance), person
        assert (root / "labels" / "000002.txt").read_text() == (root / "labels" / "000001.txt").read_text()
        assert (root / "labels" / "000003.txt").read_text() == LABELS["000003"]
        assert [reviewed(root, n) for n in LABELS] == [True, True, False, False]
        assert counter == "2 reviewed 2 / 4", counter
        assert {p: p.read_bytes() for p in (root / "images").iterdir()} == images_before

        # another program changes 000002.txt: the page's next change is refused, said, and the file kept
        (root / "labels" / "000002.txt").write_text("2 0.5 0.5 0.3 0.3\n")
        before = snapshot(root)
        browser.key("e")  # "no objects" on a version the page no longer has
        browser.wait_for("document.getElementById('message').textContent.includes('changed by another program')")
        settle()
        assert snapshot(root) == before
        assert browser.evaluate("document.getElementById('boxes').children.length") == 1  # reloaded from disk
    finally:
        browser.close()
        server.stop()

    page = cv2.imread(str(shot))
    assert page is not None, "no screenshot"
    low_orange = np.abs(page.astype(int) - (0, 152, 255)).sum(axis=2) < 40  # the low-confidence box (#ff9800)
    person_red = np.abs(page.astype(int) - (61, 61, 255)).sum(axis=2) < 40   # the confident person box
    assert low_orange.sum() > 30, "the low-confidence box is not drawn differently"
    assert person_red.sum() > 100, "the pre-filled person box is not drawn"


def test_filters_and_navigation(tmp_path):
    chromium = require_program("chromium")
    root = write_label_dataset(tmp_path / "robot-view")
    (root / "labels" / "000002.review.json").write_text('{"reviewed": true, "history": []}')
    server = LabelServer(root, "--http", "127.0.0.1:0")
    browser = Browser(chromium, str(tmp_path / "profile"))
    try:
        browser.open(server.url + "/")
        name = "document.getElementById('name').textContent"
        browser.wait_for(f"document.body.dataset.busy === '0' && {name} === '000000.jpg'")
        assert browser.evaluate("document.getElementById('counter').textContent") == "reviewed 1 / 4"
        browser.key("n")
        browser.wait_for(f"document.body.dataset.busy === '0' && {name} === '000001.jpg'")
        browser.key("f")  # not yet reviewed: 000002 is skipped
        browser.key("n")
        browser.wait_for(f"document.body.dataset.busy === '0' && {name} === '000003.jpg'")
        browser.key("f")  # no boxes: only 000000
        browser.wait_for(f"document.body.dataset.busy === '0' && {name} === '000000.jpg'")
        browser.key("n")
        browser.wait_for("document.getElementById('message').textContent.includes('no further image')")
        browser.key("f")  # class: person -> 000001 (the only one with a person)
        browser.wait_for(f"document.body.dataset.busy === '0' && {name} === '000001.jpg'")
        assert browser.evaluate("document.getElementById('filter').selectedOptions[0].textContent") == "class: person"
        browser.key("e")  # no objects: the boxes go, the image is reviewed
        browser.wait_for("document.getElementById('counter').textContent === 'reviewed 2 / 4'")
        browser.wait_for("document.body.dataset.busy === '0'")
        assert (root / "labels" / "000001.txt").read_text() == "" and reviewed(root, "000001")
    finally:
        browser.close()
        server.stop()
