"""The labelling page's files: a dataset folder's label files, review records and undo history.

Only files under `labels/` are ever written, and only for images of the dataset: a request names an
image, and the name is looked up among the images found at start, never joined onto a path. Per
image NAME (images/NAME.jpg):
- labels/NAME.txt: Darknet's label file (format: labels.py), replaced atomically;
- labels/NAME.review.json: {"reviewed": bool, "reviewed_at": ISO time or null, "history": [...]}, the
  history holding the earlier states ({"labels": text or null when there was no file, "reviewed",
  "wrote": a hash of the text that change wrote}), newest last, for undo;
- labels/NAME.detections.json (read only): what `collect` knew about the pre-filled boxes.

Every change names the version of the label file it was made on (its mtime and a hash of its text);
when another program changed the file since, the change is refused (Conflict), never merged over it.
Undo also needs the file to be still what the page's last change wrote: the history holds only the
page's own states, so undoing over another program's text would lose that text.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..model.classnames import read_names
from .dataset import IMAGE_EXTENSIONS, DatasetError, label_path_for
from .labels import (DETECTIONS_SUFFIX, REVIEW_SUFFIX, LabelBoxes, coordinate_problem, format_label_lines,
                     parse_label_text, sidecar_path)

HISTORY_LIMIT = 200         # undo steps kept per image
MAX_BOXES = 500             # per image; more is a broken client, not a picture


class RequestError(Exception):
    """A change refused; `status` is the HTTP status that says why (400, 404, 409)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _atomic_write(path: Path, text: str) -> None:
    """Write aside in the same folder, then rename over: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _read_text(path: Path) -> tuple:
    """(the file's text or None when there is no file, None or why it cannot be read as UTF-8 text)."""
    try:
        return path.read_text(encoding="utf-8"), None
    except FileNotFoundError:
        return None, None
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8 or delete it"
    except OSError as error:
        return None, f"cannot be read ({error.strerror}); make it a readable text file or remove it"


def _text_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def version_of(path: Path) -> str:
    """'MTIME_NS:HASH' of a label file, 'none' when it does not exist, 'unreadable:ERRNO' when it
    cannot be read (a folder, no permission)."""
    try:
        data = path.read_bytes()
        mtime_ns = path.stat().st_mtime_ns
    except FileNotFoundError:
        return "none"
    except OSError as error:
        return f"unreadable:{error.errno}"
    return f"{mtime_ns}:{_text_hash(data)}"


def parse_boxes(items, class_count: int) -> LabelBoxes:
    """A page's box list [{"class_id": int, "box": [cx, cy, w, h]}, ...] checked as a label file's
    lines are, and sizes above zero; RequestError(400) says which box and why."""
    if not isinstance(items, list):
        raise RequestError(400, f"'boxes' must be a list of {{class_id, box}} objects, found {type(items).__name__}")
    if len(items) > MAX_BOXES:
        raise RequestError(400, f"at most {MAX_BOXES} boxes an image, found {len(items)}")
    class_ids, boxes = [], []
    for number, item in enumerate(items, start=1):
        class_id = item.get("class_id") if isinstance(item, dict) else None
        box = item.get("box") if isinstance(item, dict) else None
        if isinstance(class_id, bool) or not isinstance(class_id, int):
            raise RequestError(400, f"box {number}: 'class_id' must be a whole number, found {class_id!r}")
        if not 0 <= class_id < class_count:
            raise RequestError(400, f"box {number}: class id {class_id} is out of range: this dataset has "
                                    f"{class_count} classes (ids 0 to {class_count - 1})")
        if not (isinstance(box, list) and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise RequestError(400, f"box {number}: 'box' must be four numbers [cx, cy, w, h], found {box!r}")
        problem = coordinate_problem(box)
        if problem is None and not (box[2] > 0 and box[3] > 0):
            problem = f"width and height must be above 0, found {box[2]!r} x {box[3]!r}"
        if problem:
            raise RequestError(400, f"box {number}: {problem}")
        class_ids.append(class_id)
        boxes.append([float(v) for v in box])
    return LabelBoxes(np.array(class_ids, np.int32), np.array(boxes, np.float64).reshape(-1, 4))


class LabelStore:
    """The images of a Darknet-layout dataset folder and their labels, changed one image at a time."""

    def __init__(self, root):
        self.root = Path(root)
        images_dir = self.root / "images"
        if not images_dir.is_dir():
            raise UserError(f"{self.root}: expected a dataset folder with images/, labels/ and classes.txt "
                            "(as `robot-detector collect` makes); found no images/ folder")
        classes_file = self.root / "classes.txt"
        if not classes_file.is_file():
            raise UserError(f"{classes_file}: not found; a dataset folder needs classes.txt with the class "
                            "names, one a line, in the order of the class ids in the label files")
        self.class_names = read_names(classes_file)
        paths = sorted(p for p in images_dir.rglob("*")
                       if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith("."))
        if not paths:
            raise UserError(f"{images_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) to label")
        self.images = {p.relative_to(images_dir).as_posix(): p for p in paths}
        image_of_label = {}
        for name, path in self.images.items():
            label_path = label_path_for(path)
            if label_path != (self.root / "labels" / name).with_suffix(".txt"):
                raise UserError(f"{path}: an images/ folder inside images/ puts this image's label file outside "
                                f"{self.root / 'labels'} (Darknet's rule); move the image or rename that folder")
            if label_path in image_of_label:
                raise DatasetError(path, f"shares its label file {label_path} with {image_of_label[label_path]} "
                                         "(Darknet's rule: same name, extension .txt), so saving one would replace "
                                         "the other's labels; rename or remove one of the two images")
            image_of_label[label_path] = path
        self._lock = threading.Lock()

    # --- paths, only ever from a known name ---
    def image_path(self, name: str) -> Path:
        try:
            return self.images[name]
        except (KeyError, TypeError):
            raise RequestError(404, f"{name!r} is not an image of this dataset ({self.root / 'images'})") from None

    def label_path(self, name: str) -> Path:
        return label_path_for(self.image_path(name))

    def _sidecar(self, name: str, suffix: str) -> Path:
        return sidecar_path(self.label_path(name), suffix)

    # --- reading ---
    def _review(self, name: str) -> dict:
        text, _ = _read_text(self._sidecar(name, REVIEW_SUFFIX))
        try:
            record = json.loads(text) if text else {}
        except ValueError:
            record = {}  # a damaged record loses the undo history, never the labels
        return {"reviewed": bool(record.get("reviewed", False)), "reviewed_at": record.get("reviewed_at"),
                "history": list(record.get("history", []))}

    def _confidences(self, name: str) -> list:
        """[(class id, box, confidence)] that collect recorded, or []."""
        try:
            record = json.loads(_read_text(self._sidecar(name, DETECTIONS_SUFFIX))[0] or "{}")
            return [(int(b["class_id"]), [float(v) for v in b["box"]], float(b["confidence"]))
                    for b in record.get("boxes", [])]
        except (ValueError, TypeError, KeyError, AttributeError):
            return []

    def state(self, name: str) -> dict:
        """What the page shows for one image: its boxes (with collect's confidence where the box is
        still the one collect wrote), whether it was reviewed, and the label file's version."""
        label_path = self.label_path(name)
        version = version_of(label_path)
        text, unreadable = _read_text(label_path)
        labels, problems = parse_label_text(text or "", len(self.class_names))
        known = self._confidences(name)
        boxes = []
        for class_id, box in zip(labels.class_ids.tolist(), labels.boxes_norm.astype(np.float64).tolist()):
            confidence = next((p for c, b, p in known if c == class_id and np.allclose(b, box, atol=2e-6)), None)
            boxes.append({"class_id": class_id, "box": [round(v, 6) for v in box], "confidence": confidence})
        review = self._review(name)
        return {"name": name, "version": version, "boxes": boxes, "reviewed": review["reviewed"],
                "undo": len(review["history"]),
                "problem": f"{label_path}: {unreadable}" if unreadable
                else f"{label_path}:{problems[0][0]}: {problems[0][1]}" if problems else None}

    def summary(self) -> list:
        """One entry per image for the page's list, counter and filters."""
        entries = []
        for name in self.images:
            labels, _ = parse_label_text(_read_text(self.label_path(name))[0] or "", len(self.class_names))
            entries.append({"name": name, "reviewed": self._review(name)["reviewed"],
                            "classes": sorted(set(labels.class_ids.tolist())), "boxes": len(labels)})
        return entries

    # --- changing ---
    def _check_version(self, name: str, version) -> Path:
        label_path = self.label_path(name)
        current = version_of(label_path)
        if version != current:
            raise RequestError(409, f"{label_path} was changed by another program since this page loaded it; "
                                    "nothing was written: the page shows the file as it is now, redo your change "
                                    "there")
        return label_path

    def _problem_free(self, name: str, label_path: Path) -> None:
        text, unreadable = _read_text(label_path)
        if unreadable:
            raise RequestError(409, f"{label_path}: {unreadable} (the page does not overwrite a file it cannot read)")
        _, problems = parse_label_text(text or "", len(self.class_names))
        if problems:
            number, problem = problems[0]
            raise RequestError(409, f"{label_path}:{number}: {problem}; fix the file in a text editor first "
                                    "(the page does not overwrite lines it cannot read)")

    def write(self, name: str, version, boxes, reviewed=None) -> dict:
        """Replace the image's boxes (and its review mark, unless None); the earlier state goes on
        the undo history."""
        if reviewed is not None and not isinstance(reviewed, bool):
            raise RequestError(400, f"'reviewed' must be true or false, found {reviewed!r}")
        labels = parse_boxes(boxes, len(self.class_names))
        with self._lock:
            label_path = self._check_version(name, version)
            self._problem_free(name, label_path)
            review = self._review(name)
            text = format_label_lines(labels)
            earlier = {"labels": _read_text(label_path)[0], "reviewed": review["reviewed"],
                       "wrote": _text_hash(text.encode("utf-8"))}
            review["history"] = (review["history"] + [earlier])[-HISTORY_LIMIT:]
            if reviewed is not None:
                review["reviewed"] = reviewed
                review["reviewed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if reviewed else None
            # the record first: a change is never on disk without the way back
            _atomic_write(self._sidecar(name, REVIEW_SUFFIX), json.dumps(review) + "\n")
            _atomic_write(label_path, text)
        return self.state(name)

    def undo(self, name: str, version) -> dict:
        """Put back the image's state before its last change."""
        with self._lock:
            label_path = self._check_version(name, version)
            review = self._review(name)
            if not review["history"]:
                raise RequestError(409, f"nothing to undo for {name}: this page has not changed it")
            current, _ = _read_text(label_path)
            if current is None or review["history"][-1].get("wrote") != _text_hash(current.encode("utf-8")):
                raise RequestError(409, f"{label_path} is no longer what this page's last change wrote: another "
                                        "program changed it since, and undo would lose that change; nothing was "
                                        "undone (change the boxes on the page instead)")
            earlier = review["history"].pop()
            if earlier.get("labels") is None:
                label_path.unlink(missing_ok=True)
            else:
                _atomic_write(label_path, str(earlier["labels"]))
            review["reviewed"] = bool(earlier.get("reviewed", False))
            review["reviewed_at"] = review["reviewed_at"] if review["reviewed"] else None
            _atomic_write(self._sidecar(name, REVIEW_SUFFIX), json.dumps(review) + "\n")
        return self.state(name)

