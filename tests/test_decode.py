"""Decoding follows Darknet v1 exactly; checked against a plain loop written from the spec."""
import numpy as np
import pytest

from detector.model.decode import PERSON, decode, iou_matrix


def reference_decode(raw, threshold, nms):
    """Darknet's get_detection_boxes + do_nms_sort, one box and one class at a time."""
    raw = raw.astype(np.float32)
    boxes, probs = [], []
    for cell in range(49):
        row, col = divmod(cell, 7)
        for n in range(2):
            i = cell * 2 + n
            conf = raw[980 + i]
            c = raw[1078 + i * 4:1078 + i * 4 + 4]
            boxes.append(((c[0] + col) / 7, (c[1] + row) / 7, c[2] * c[2], c[3] * c[3]))
            p = [np.float32(conf * raw[cell * 20 + k]) for k in range(20)]
            probs.append([v if v > np.float32(threshold) else np.float32(0) for v in p])

    def iou(a, b):
        def overlap(x1, w1, x2, w2):
            return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
        ow, oh = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
        inter = 0.0 if ow < 0 or oh < 0 else ow * oh
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.float32(inter) / np.float32(a[2] * a[3] + b[2] * b[3] - inter)

    for k in range(20):
        order = sorted(range(98), key=lambda i: -probs[i][k])  # sorted() is stable
        for a in range(98):
            if probs[order[a]][k] == 0:
                continue
            for b in range(a + 1, 98):
                if iou(boxes[order[a]], boxes[order[b]]) > nms:
                    probs[order[b]][k] = np.float32(0)
    return {(i, k, round(float(probs[i][k]), 6)) for i in range(98) for k in range(20) if probs[i][k] > 0}


def as_set(detections, raw):
    """Map detections back to (box index, class, prob) using their decoded coordinates."""
    found = set()
    for d in detections:
        col, row = min(int(d.x * 7), 6), min(int(d.y * 7), 6)
        cell = row * 7 + col
        candidates = [cell * 2 + n for n in range(2)
                      if np.isclose(raw[1078 + (cell * 2 + n) * 4 + 2] ** 2, d.w, atol=1e-6)
                      and np.isclose(raw[1078 + (cell * 2 + n) * 4 + 3] ** 2, d.h, atol=1e-6)]
        assert candidates, d
        found.add((candidates[0], d.cls_id, round(d.confidence, 6)))
    return found


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_crowded_outputs(seed):
    rng = np.random.default_rng(seed)
    raw = rng.random(1470).astype(np.float32)
    raw[1078:] = rng.uniform(0.2, 0.9, 392)  # large boxes: lots of overlap, lots of suppression
    detections = decode(raw, threshold=0.2, nms_iou=0.5)
    assert len(detections) > 20
    assert as_set(detections, raw) == reference_decode(raw, 0.2, 0.5)
    confidences = [d.confidence for d in detections]
    assert confidences == sorted(confidences, reverse=True)


def empty_raw():
    return np.zeros(1470, np.float32)


def put_box(raw, cell, n, conf, cls_scores, x_off, y_off, w, h):
    raw[cell * 20:cell * 20 + 20] = 0
    for cls, score in cls_scores.items():
        raw[cell * 20 + cls] = score
    raw[980 + cell * 2 + n] = conf
    raw[1078 + (cell * 2 + n) * 4:1078 + (cell * 2 + n) * 4 + 4] = [x_off, y_off, np.sqrt(w), np.sqrt(h)]


def test_box_position_size_and_class():
    raw = empty_raw()
    put_box(raw, cell=3 * 7 + 5, n=1, conf=0.9, cls_scores={PERSON: 0.8}, x_off=0.5, y_off=0.25, w=0.3, h=0.64)
    [d] = decode(raw)
    assert (d.cls, d.cls_id) == ("person", 14)
    assert d.confidence == pytest.approx(0.72, abs=1e-6)
    assert (d.x, d.y, d.w, d.h) == pytest.approx(((5.5) / 7, 3.25 / 7, 0.3, 0.64), abs=1e-6)
    assert d.pixel_box(700, 700) == (round((5.5 / 7 - 0.15) * 700), round((3.25 / 7 - 0.32) * 700),
                                     round((5.5 / 7 + 0.15) * 700), round((3.25 / 7 + 0.32) * 700))


def test_threshold_is_strict_and_one_box_can_carry_several_classes():
    raw = empty_raw()
    put_box(raw, cell=10, n=0, conf=1.0, cls_scores={PERSON: 0.5, 7: 0.2, 2: 0.3}, x_off=0.5, y_off=0.5, w=0.1, h=0.1)
    classes = {d.cls for d in decode(raw, threshold=0.2)}
    assert classes == {"person", "bird"}  # the cat's 0.2 is not > 0.2


def test_border_boxes_are_not_clipped_in_normalised_space():
    raw = empty_raw()
    put_box(raw, cell=0, n=0, conf=1.0, cls_scores={PERSON: 0.9}, x_off=0.0, y_off=0.0, w=0.5, h=0.5)
    put_box(raw, cell=48, n=1, conf=1.0, cls_scores={PERSON: 0.9}, x_off=1.0, y_off=1.0, w=0.5, h=0.5)
    corner, far = sorted(decode(raw), key=lambda d: d.x)
    assert (corner.x, corner.y) == (0.0, 0.0) and (far.x, far.y) == pytest.approx((1.0, 1.0))
    assert corner.pixel_box(640, 480) == (0, 0, 160, 120)
    assert far.pixel_box(640, 480) == (480, 360, 639, 479)


def test_ties_keep_the_first_box_in_scan_order():
    raw = empty_raw()
    put_box(raw, cell=8, n=0, conf=0.9, cls_scores={PERSON: 0.9}, x_off=0.5, y_off=0.5, w=0.2, h=0.2)
    raw[980 + 8 * 2 + 1] = 0.9
    raw[1078 + (8 * 2 + 1) * 4:1078 + (8 * 2 + 1) * 4 + 4] = [0.55, 0.5, np.sqrt(0.2), np.sqrt(0.2)]
    [d] = decode(raw)
    assert d.x == pytest.approx(1.5 / 7)  # box 0 (x_off 0.5) survives, box 1 is suppressed


def test_zero_size_boxes_do_not_suppress_each_other():
    raw = empty_raw()
    put_box(raw, cell=20, n=0, conf=0.9, cls_scores={PERSON: 0.9}, x_off=0.5, y_off=0.5, w=0.0, h=0.0)
    raw[980 + 20 * 2 + 1] = 0.8
    raw[1078 + (20 * 2 + 1) * 4:1078 + (20 * 2 + 1) * 4 + 4] = [0.5, 0.5, 0.0, 0.0]
    assert np.isnan(iou_matrix(np.zeros((2, 4), np.float32))).all()
    assert len(decode(raw)) == 2


def test_many_overlapping_persons():
    raw = empty_raw()
    # a crowd along row 3, one person a cell, 4/7 wide: neighbours (1/7 apart) overlap with IoU
    # 0.6, every second one with IoU 1/3, so greedy NMS at 0.5 keeps every second person
    for col in range(7):
        put_box(raw, cell=21 + col, n=0, conf=0.9 - col * 0.01, cls_scores={PERSON: 1.0},
                x_off=0.5, y_off=0.5, w=4 / 7, h=0.6)
    detections = decode(raw, nms_iou=0.5)
    assert [round(d.x * 7 - 0.5) for d in detections] == [0, 2, 4, 6]
    assert len(decode(raw, nms_iou=0.7)) == 7


def test_nms_is_per_class():
    raw = empty_raw()
    put_box(raw, cell=24, n=0, conf=0.9, cls_scores={11: 0.9}, x_off=0.5, y_off=0.5, w=0.3, h=0.3)
    raw[980 + 24 * 2 + 1] = 0.8
    raw[1078 + (24 * 2 + 1) * 4:1078 + (24 * 2 + 1) * 4 + 4] = [0.5, 0.5, np.sqrt(0.3), np.sqrt(0.3)]
    raw[24 * 20 + PERSON] = 0.5  # box 1 is a 0.4 person; box 0 is a 0.45 person and a 0.81 dog
    detections = decode(raw)
    # the dog does not suppress the person on the same box; each class suppresses its own duplicate
    assert [(d.cls, round(d.confidence, 3)) for d in detections] == [("dog", 0.81), ("person", 0.45)]
