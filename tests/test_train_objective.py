"""The training objective is Darknet's v1 detection layer: its gradient is exactly -delta / batch,
where delta comes from a plain loop transcription of the rules in docs/design/darknet-v1.md."""
import math

import numpy as np
import pytest

from detector.model import chainer_compat  # noqa: F401
import chainer

from detector.model.cfg import parse_cfg
from detector.train.labels import LabelBoxes
from detector.train.objective import detection_loss
from train_helpers import small_cfg


def darknet_delta(output, labels, side, num, classes, scales, sqrt=True, rescore=True):
    """One image at a time, one cell at a time, as forward_detection_layer does it."""
    object_scale, noobject_scale, class_scale, coord_scale = scales
    batch, cells = output.shape[0], side * side
    delta = np.zeros_like(output, dtype=np.float64)

    def iou(a, b):
        def overlap(x1, w1, x2, w2):
            return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
        w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
        inter = 0.0 if w < 0 or h < 0 else w * h
        return inter / (a[2] * a[3] + b[2] * b[3] - inter) if inter > 0 else 0.0

    for b in range(batch):
        out = output[b].astype(np.float64)
        truth = {}  # cell -> (class, x offset, y offset, w, h, weight); first box wins
        for cls, (x, y, w, h), weight in zip(labels[b].class_ids, labels[b].boxes_norm, labels[b].weights):
            if w < 0.005 or h < 0.005:
                continue
            col, row = int(x * side), int(y * side)
            truth.setdefault(row * side + col, (cls, x * side - col, y * side - row, w, h, weight))
        for cell in range(cells):
            for n in range(num):
                p = cells * classes + cell * num + n
                delta[b, p] = noobject_scale * (0 - out[p])
            if cell not in truth:
                continue
            cls, tx, ty, tw, th, weight = truth[cell]
            for k in range(classes):
                c = cell * classes + k
                delta[b, c] = weight * class_scale * ((1.0 if k == cls else 0.0) - out[c])
            t_box = (tx / side, ty / side, tw, th)
            best, best_iou, best_rmse = -1, 0.0, 20.0
            for n in range(num):
                o = out[cells * (classes + num) + (cell * num + n) * 4:][:4].copy()
                o[0] /= side
                o[1] /= side
                if sqrt:
                    o[2], o[3] = o[2] ** 2, o[3] ** 2
                this_iou = iou(o, t_box)
                rmse = math.sqrt(sum((o[i] - t_box[i]) ** 2 for i in range(4)))
                if best_iou > 0 or this_iou > 0:
                    if this_iou > best_iou:
                        best, best_iou = n, this_iou
                elif rmse < best_rmse:
                    best, best_rmse = n, rmse
            p = cells * classes + cell * num + best
            delta[b, p] = weight * object_scale * ((best_iou if rescore else 1.0) - out[p])
            box = cells * (classes + num) + (cell * num + best) * 4
            targets = (tx, ty, math.sqrt(tw), math.sqrt(th)) if sqrt else (tx, ty, tw, th)
            for i in range(4):
                delta[b, box + i] = weight * coord_scale * (targets[i] - out[box + i])
    return delta


def crafted_batch(side=7, num=2, classes=3, seed=0):
    """Outputs and labels with every case: IoU>0 cells where the second box wins, a cell where no
    box overlaps (RMSE decides), two labels in one cell, a tiny box, an empty image, a mixup weight."""
    rng = np.random.default_rng(seed)
    cells = side * side
    output = rng.normal(0.0, 0.3, (3, cells * (classes + 5 * num))).astype(np.float32)
    coords = output[:, cells * (classes + num):].reshape(3, cells, num, 4)
    coords[..., :2] = rng.uniform(0, 1, coords[..., :2].shape)
    coords[..., 2:] = rng.uniform(0.1, 0.6, coords[..., 2:].shape)

    def cell_of(x, y):
        return int(y * side) * side + int(x * side)

    # Image 0: a box whose cell's second prediction overlaps it best.
    c = cell_of(0.5, 0.5)
    coords[0, c, 0] = (0.9, 0.9, 0.1, 0.1)            # far and small: IoU 0
    coords[0, c, 1] = (0.45, 0.6, 0.55, 0.7)          # near the truth: IoU > 0
    # Image 0: a cell where neither prediction overlaps: the one with the lower RMSE is responsible.
    c2 = cell_of(0.13, 0.13)
    coords[0, c2, 0] = (0.0, 0.0, 0.0, 0.0)           # zero size: IoU 0, RMSE large
    coords[0, c2, 1] = (0.1, 0.1, 0.1, 0.1)           # small, elsewhere in the cell: IoU 0, RMSE smaller
    labels = [
        LabelBoxes([1, 2, 0, 2, 1], [(0.5, 0.5, 0.3, 0.5), (0.13, 0.13, 0.02, 0.02),
                                     (0.52, 0.52, 0.1, 0.1),   # same cell as the first: dropped
                                     (0.8, 0.3, 0.004, 0.3),   # too narrow: dropped
                                     (0.9, 0.8, 0.25, 0.25)], [1, 1, 1, 1, 0.3]),
        LabelBoxes.empty(),
        LabelBoxes([0, 1], [(0.33, 0.71, 0.4, 0.3), (0.75, 0.25, 0.15, 0.45)]),
    ]
    return output, labels


@pytest.mark.parametrize("side, num, classes, sqrt", [(7, 2, 3, 1), (5, 3, 1, 1), (7, 2, 2, 0)])
def test_gradient_is_minus_darknet_delta_over_batch(side, num, classes, sqrt):
    size = side * 4
    spec = parse_cfg(small_cfg(size=size, side=side, num=num, classes=classes, filters=(4, 8), sqrt=sqrt))
    detection = spec.detection
    output, labels = crafted_batch(side, num, classes)
    if not sqrt:
        output[0, side * side * (classes + num):] = np.abs(output[0, side * side * (classes + num):])
    variable = chainer.Variable(output.copy())
    loss, targets = detection_loss(variable, labels, detection)
    loss.backward()
    delta = darknet_delta(output, labels, side, num, classes, (1, 0.5, 1, 5), sqrt=bool(sqrt))
    np.testing.assert_allclose(variable.grad, -delta / len(labels), rtol=2e-6, atol=1e-8)
    # The value is the cost whose gradient this is: sum of 1/2 delta^2 / scale over the terms.
    cells = side * side
    assert targets.iou[1].sum() == 0 and np.count_nonzero(variable.grad[1, :cells * classes]) == 0
    assert np.count_nonzero(variable.grad[1]) == cells * num  # an empty image: only no-object terms


def test_responsible_box_choice_and_weights():
    output, labels = crafted_batch()
    spec = parse_cfg(small_cfg())
    variable = chainer.Variable(output.copy())
    loss, targets = detection_loss(variable, labels, spec.detection)
    loss.backward()
    cells, classes, num = 49, 3, 2
    grad_coords = variable.grad[:, cells * (classes + num):].reshape(3, cells, num, 4)
    c = int(0.5 * 7) * 7 + int(0.5 * 7)
    assert np.all(grad_coords[0, c, 0] == 0) and np.all(grad_coords[0, c, 1] != 0)  # IoU picks box 1
    assert targets.iou[0, c] > 0
    c2 = int(0.13 * 7) * 7 + int(0.13 * 7)
    assert np.all(grad_coords[0, c2, 0] == 0) and np.all(grad_coords[0, c2, 1] != 0)  # RMSE picks box 1
    assert targets.iou[0, c2] == 0
    # The mixup-weighted box contributes 0.3 of its coordinate gradient.
    c3 = int(0.8 * 7) * 7 + int(0.9 * 7)
    box = grad_coords[0, c3][np.abs(grad_coords[0, c3]).sum(axis=1) > 0][0]
    unweighted = LabelBoxes(labels[0].class_ids, labels[0].boxes_norm)
    again = chainer.Variable(output.copy())
    loss2, _ = detection_loss(again, [unweighted] + labels[1:], spec.detection)
    loss2.backward()
    box2 = again.grad[:, cells * (classes + num):].reshape(3, cells, num, 4)[0, c3]
    box2 = box2[np.abs(box2).sum(axis=1) > 0][0]
    np.testing.assert_allclose(box, 0.3 * box2, rtol=1e-5)
    assert float(loss.array) < float(loss2.array)


def test_batch_statistics_are_darknets_on_a_hand_computed_case():
    """Darknet's per-batch line (Avg IOU, Pos Cat, All Cat, Pos Obj, Any Obj, count) on a 2x2 grid,
    2 boxes, 2 classes, every value worked out by hand in the comments."""
    spec = parse_cfg(small_cfg(size=8, side=2, num=2, classes=2, filters=(4,)))
    # raw layout per image: class scores [cell * 2 + k] (0..7), confidences 8 + cell * 2 + n (8..15),
    # boxes 16 + (cell * 2 + n) * 4: x, y offsets in the cell, sqrt(w), sqrt(h)
    raw = np.zeros((2, 48), np.float32)
    # Image 0, cell 0, truth class 1 at (0.25, 0.25, 0.5, 0.5): in Darknet's cell units (0.25, 0.25, 0.5, 0.5).
    raw[0, 0:2] = (0.2, 0.7)                        # Pos Cat 0.7; the cell's class scores sum to 0.9
    raw[0, 8:10] = (0.6, 0.1)                       # box 0 is responsible: Pos Obj 0.6
    raw[0, 16:20] = (0.5, 0.5, 0.5 ** 0.5, 0.5)     # (0.25, 0.25, 0.5, 0.25): IoU 0.125 / 0.25 = 0.5
    raw[0, 20:24] = (0.9, 0.9, 0.1, 0.1)            # (0.45, 0.45, 0.01, 0.01) inside the truth: IoU 0.0004
    # Image 1, cell 3, truth class 0 at (0.75, 0.75, 0.2, 0.2): in cell units (0.25, 0.25, 0.2, 0.2).
    raw[1, 6:8] = (0.4, -0.2)                       # Pos Cat 0.4; sum 0.2
    raw[1, 14:16] = (0.3, 0.5)                      # no box overlaps: the lower RMSE, box 1, is responsible
    raw[1, 40:44] = (0.0, 0.0, 0.1, 0.1)            # (0, 0, 0.01, 0.01): RMSE 0.41
    raw[1, 44:48] = (0.9, 0.9, 0.1, 0.1)            # (0.45, 0.45, 0.01, 0.01): RMSE 0.37, IoU 0
    labels = [LabelBoxes([1, 0], [(0.25, 0.25, 0.5, 0.5), (0.3, 0.3, 0.2, 0.2)]),  # the second shares cell 0: dropped
              LabelBoxes([0], [(0.75, 0.75, 0.2, 0.2)])]
    _, targets = detection_loss(chainer.Variable(raw), labels, spec.detection)
    statistics = targets.statistics
    assert statistics.count == 2
    assert statistics.avg_iou == pytest.approx((0.5 + 0.0) / 2, abs=1e-6)
    assert statistics.pos_cat == pytest.approx((0.7 + 0.4) / 2, abs=1e-6)
    assert statistics.all_cat == pytest.approx((0.9 + 0.2) / (2 * 2), abs=1e-6)
    assert statistics.pos_obj == pytest.approx((0.6 + 0.5) / 2, abs=1e-6)
    assert statistics.any_obj == pytest.approx((0.6 + 0.1 + 0.3 + 0.5) / (2 * 4 * 2), abs=1e-6)
    assert set(statistics.as_dict()) == {"avg_iou", "pos_cat", "all_cat", "pos_obj", "any_obj", "count"}
    # A batch without objects: the per-object means do not exist (Darknet would print nan).
    _, empty = detection_loss(chainer.Variable(raw), [LabelBoxes.empty(), LabelBoxes.empty()], spec.detection)
    assert empty.statistics.count == 0 and empty.statistics.avg_iou is None and empty.statistics.pos_obj is None
    assert empty.statistics.any_obj == pytest.approx(statistics.any_obj)
