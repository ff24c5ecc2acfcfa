"""A small dataset as `collect` leaves it, for the labelling page's tests."""
import json
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("person", "dog", "cat")
BOX_A = "0 0.300000 0.400000 0.200000 0.300000\n"   # right object, wrong place and size
BOX_WRONG = "1 0.800000 0.800000 0.100000 0.100000\n"  # nothing there: to be deleted
LABELS = {"000000": "", "000001": BOX_A + BOX_WRONG, "000002": "2 0.500000 0.500000 0.200000 0.200000\n",
          "000003": "2 0.500000 0.500000 0.400000 0.400000\n"}


def write_label_dataset(root, size=(320, 240)):
    root = Path(root)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    for i, (name, text) in enumerate(LABELS.items()):
        y, x = np.mgrid[0:size[1], 0:size[0]]
        image = np.stack([(x * (i + 1)) % 256, (y * 2 + 40 * i) % 256, np.full_like(x, 60 + 40 * i)], -1).astype(np.uint8)
        cv2.rectangle(image, (90, 90), (150, 200), (200, 200, 200), -1)  # someone to label
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), image)
        (root / "labels" / f"{name}.txt").write_text(text)
    # collect's record: box A was confident, the wrong box was not
    (root / "labels" / "000001.detections.json").write_text(json.dumps({"frame_index": 7, "boxes": [
        {"class_id": 0, "box": [0.3, 0.4, 0.2, 0.3], "confidence": 0.91},
        {"class_id": 1, "box": [0.8, 0.8, 0.1, 0.1], "confidence": 0.15}]}))
    return root


def snapshot(root):
    """Every file under root: (bytes, mtime_ns), to prove a refused request changed nothing."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(root).rglob("*")) if p.is_file()}
