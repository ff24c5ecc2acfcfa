"""Training and evaluation data: Darknet's folder layout, a list of image paths, or Pascal VOC.

`load_dataset(spec, names)` reads every label once, up front, and checks it; images are read only
when a sample is asked for. Every problem is reported as one UserError naming the file (and line),
so a bad dataset stops before any training starts. Nothing is ever written into the input.

Accepted forms of `spec`:
- a folder with `images/` (any depth) and, for each image, `labels/<same relative path>.txt`
  holding `class cx cy w h` lines normalised to the image, and `classes.txt` (one name a line);
- a text file listing image paths, one a line (Darknet's train.txt); relative paths are taken
  relative to the list file's folder; each label file is found as Darknet finds it: the last
  `images` or `JPEGImages` folder in the path becomes `labels`, the extension becomes `.txt`;
- a Pascal VOC root `.../VOC2007[:split]` (split default `trainval`): ImageSets/Main/<split>.txt,
  Annotations/<id>.xml, JPEGImages/<id>.jpg. Objects marked `difficult`, and objects of classes
  not in `names`, are left out (as Darknet's voc_label.py does).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError
from ..model.classnames import read_names
from ..model.decode import VOC_CLASSES
from .labels import LabelBoxes, Sample, parse_label_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_VOC_SPLIT = "trainval"


class DatasetError(UserError):
    """A problem in the user's data; `where` is 'file' or 'file:line'."""

    def __init__(self, where, problem: str, more: int = 0):
        extra = f" ({more} more problem{'s' if more > 1 else ''} in this dataset after this one)" if more else ""
        super().__init__(f"{where}: {problem}{extra}")


@dataclass(frozen=True)
class Dataset(Sequence):
    """Image paths with their checked labels; indexing reads the image (a Sample)."""
    image_paths: tuple     # of Path
    labels: tuple          # of LabelBoxes, one per image
    class_names: tuple     # of str
    source: str            # what the user named, for messages

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> Sample:
        path = self.image_paths[index]
        return Sample(read_image_bgr(path), self.labels[index], str(path))


class DecodedImages(Sequence):
    """A dataset whose decoded images stay in memory, up to `budget_bytes` of them (the first read;
    training draws at random, so which ones are kept does not matter). Decoding a 640x480 PNG costs
    about as much CPU as augmenting it (docs/measurements/training.md). Kept images are read-only,
    so an augmentation that wrote into its input would fail loudly instead of corrupting the cache."""

    def __init__(self, dataset: Dataset, budget_bytes: int):
        self.dataset, self.budget_bytes = dataset, budget_bytes
        self.kept, self.kept_bytes = {}, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        image_bgr = self.kept.get(index)
        if image_bgr is None:
            image_bgr = read_image_bgr(self.dataset.image_paths[index])
            if self.kept_bytes + image_bgr.nbytes <= self.budget_bytes:
                image_bgr.flags.writeable = False
                self.kept[index] = image_bgr
                self.kept_bytes += image_bgr.nbytes
        return Sample(image_bgr, self.dataset.labels[index], str(self.dataset.image_paths[index]))


def read_image_bgr(path) -> np.ndarray:
    image_bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image_bgr is None:
        raise DatasetError(path, "cannot read this image: the file is missing, empty or not an image "
                                 "OpenCV can decode (JPEG, PNG, BMP, ...)")
    return image_bgr


# --- validation helpers --------------------------------------------------------------------------

class _Problems:
    """Collects problems so that the first is reported with a count of the rest."""

    def __init__(self):
        self.found = []

    def add(self, where, problem: str) -> None:
        self.found.append((where, problem))

    def raise_any(self) -> None:
        if self.found:
            where, problem = self.found[0]
            raise DatasetError(where, problem, len(self.found) - 1)


def _check_image(path: Path, problems: _Problems) -> None:
    """Cheap up-front check (existence, a decodable signature); pixels are read later."""
    if not path.is_file():
        problems.add(path, "image file not found")
    elif path.stat().st_size == 0 or not cv2.haveImageReader(str(path)):
        problems.add(path, "not an image OpenCV can read (expected JPEG, PNG, BMP, ...)")


def parse_label_file(path: Path, class_count: int, problems: _Problems) -> LabelBoxes:
    """A Darknet label file (format: labels.py); every bad line is a problem naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(path, "label file not found (an image without objects needs an empty .txt file)")
        return LabelBoxes.empty()
    except (OSError, UnicodeDecodeError) as error:
        problems.add(path, f"cannot read the label file ({getattr(error, 'strerror', None) or error})")
        return LabelBoxes.empty()
    labels, found = parse_label_text(text, class_count)
    for number, problem in found:
        problems.add(f"{path}:{number}", problem)
    return labels


# --- the three forms -----------------------------------------------------------------------------

def label_path_for(image_path: Path) -> Path:
    """Darknet's rule: the last `images` or `JPEGImages` folder becomes `labels`, extension .txt."""
    parts = list(image_path.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in ("images", "JPEGImages"):
            parts[index] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _labelled(image_paths: list, class_names: tuple, source: str, problems: _Problems) -> Dataset:
    labels = []
    for image_path in image_paths:
        _check_image(image_path, problems)
        labels.append(parse_label_file(label_path_for(image_path), len(class_names), problems))
    problems.raise_any()
    return Dataset(tuple(image_paths), tuple(labels), class_names, source)


def _names_for(found: tuple | None, names: tuple | None, where: Path) -> tuple:
    if names is not None and found is not None and tuple(names) != found:
        raise UserError(f"{where} lists the classes {', '.join(found)}, but the given names are "
                        f"{', '.join(names)}: use the same names (or leave --names out)")
    return tuple(names) if names is not None else found


def _load_folder(root: Path, names: tuple | None) -> Dataset:
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise UserError(f"{root}: expected a dataset folder with images/ and labels/ (Darknet's layout), "
                        "a list file of image paths, or a Pascal VOC root; found no images/ folder")
    classes_file = root / "classes.txt"
    if not classes_file.is_file():
        raise UserError(f"{classes_file}: not found; a dataset folder needs classes.txt with the class "
                        "names, one a line, in the order of the class ids in the label files")
    class_names = _names_for(read_names(classes_file), names, classes_file)
    image_paths = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not image_paths:
        raise UserError(f"{images_dir}: empty dataset: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return _labelled(image_paths, class_names, str(root), _Problems())


def _load_list(list_file: Path, names: tuple | None) -> Dataset:
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{list_file}: cannot read the image list ({getattr(error, 'strerror', None) or error})") from None
    image_paths = [list_file.parent / line.strip() for line in text.splitlines() if line.strip()]
    if not image_paths:
        raise UserError(f"{list_file}: empty dataset: the list names no images (expected one image path a line)")
    classes_file = list_file.parent / "classes.txt"
    found = read_names(classes_file) if classes_file.is_file() else None
    class_names = _names_for(found, names, classes_file) or VOC_CLASSES
    return _labelled(image_paths, class_names, str(list_file), _Problems())


def split_voc_spec(spec: str) -> tuple:
    """'.../VOC2007:test' -> (Path('.../VOC2007'), 'test'); no split -> DEFAULT_VOC_SPLIT."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail and "/" not in tail and "\\" not in tail and head:
        return Path(head), tail
    return Path(spec), DEFAULT_VOC_SPLIT


def _xml_text(element, path: str, problems: _Problems, where) -> str | None:
    node = element.find(path)
    if node is None or node.text is None or not node.text.strip():
        problems.add(where, f"missing <{path}>")
        return None
    return node.text.strip()


def parse_voc_annotation(xml_path: Path, class_names: tuple, problems: _Problems) -> LabelBoxes:
    """One VOC XML -> normalised boxes. VOC corners are 1-based pixels; like Darknet's
    voc_label.py the centre is (min + max) / 2 - 1 and the size max - min, over the image size."""
    try:
        data = xml_path.read_bytes()
    except OSError as error:
        problems.add(xml_path, f"cannot read the annotation ({error.strerror})")
        return LabelBoxes.empty()
    # VOC annotations never declare a DTD; refusing one rules out entity expansion and external
    # entities whatever the XML parser would do with them.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        problems.add(xml_path, "XML with a DOCTYPE or ENTITY declaration is refused (VOC annotations have none)")
        return LabelBoxes.empty()
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        problems.add(f"{xml_path}:{error.position[0]}", f"not well-formed XML ({error})")
        return LabelBoxes.empty()
    size = [_xml_text(root, f"size/{key}", problems, xml_path) for key in ("width", "height")]
    try:
        width, height = (float(v) for v in size)
        if not (width > 0 and height > 0):
            raise ValueError
    except (TypeError, ValueError):
        if None not in size:
            problems.add(xml_path, f"<size> must hold a positive width and height, found {size}")
        return LabelBoxes.empty()
    class_ids, boxes = [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        difficult = (obj.findtext("difficult") or "0").strip()
        if name not in class_names or difficult == "1":
            continue
        corners = [_xml_text(obj, f"bndbox/{key}", problems, xml_path) for key in ("xmin", "xmax", "ymin", "ymax")]
        if None in corners:
            continue
        try:
            xmin, xmax, ymin, ymax = (float(v) for v in corners)
        except ValueError:
            problems.add(xml_path, f"bounding box of a {name!r} must be numbers, found {corners}")
            continue
        box = [((xmin + xmax) / 2 - 1) / width, ((ymin + ymax) / 2 - 1) / height,
               (xmax - xmin) / width, (ymax - ymin) / height]
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in box) or xmax < xmin or ymax < ymin:
            problems.add(xml_path, f"bounding box of a {name!r} {corners} does not lie in the {width:g}x{height:g} image")
            continue
        class_ids.append(class_names.index(name))
        boxes.append(box)
    return LabelBoxes(np.array(class_ids, np.int32), np.array(boxes, np.float32).reshape(-1, 4))


def _load_voc(root: Path, split: str, names: tuple | None) -> Dataset:
    class_names = tuple(names) if names is not None else VOC_CLASSES
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    try:
        ids = [line.split()[0] for line in split_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise UserError(f"{split_file}: split file not found (a VOC root is given as .../VOC2007[:split], "
                        f"split default {DEFAULT_VOC_SPLIT})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{split_file}: cannot read the split file ({getattr(error, 'strerror', None) or error})") from None
    if not ids:
        raise UserError(f"{split_file}: empty dataset: the split lists no images")
    problems = _Problems()
    image_paths, labels = [], []
    for image_id in ids:
        image_path = root / "JPEGImages" / f"{image_id}.jpg"
        _check_image(image_path, problems)
        image_paths.append(image_path)
        labels.append(parse_voc_annotation(root / "Annotations" / f"{image_id}.xml", class_names, problems))
    problems.raise_any()
    return Dataset(tuple(image_paths), tuple(labels), class_names, f"{root}:{split}")


def load_dataset(spec, names: Sequence[str] | None = None) -> Dataset:
    """A dataset folder, an image list file, or a VOC root[:split] (see the module docstring).

    names: the class names the model predicts (e.g. from --names); a folder's classes.txt must
    agree with them; a VOC root keeps only objects of these classes (default: the 20 VOC names).
    """
    text = str(spec)
    names = tuple(names) if names is not None else None
    voc_root, split = split_voc_spec(text)
    if (voc_root / "Annotations").is_dir() and (voc_root / "ImageSets").is_dir():
        return _load_voc(voc_root, split, names)
    path = Path(text)
    if path.is_dir():
        return _load_folder(path, names)
    if path.is_file():
        return _load_list(path, names)
    raise UserError(f"{path}: dataset not found (expected a folder with images/, labels/ and classes.txt, "
                    "a text file listing image paths, or a Pascal VOC root such as VOCdevkit/VOC2007:trainval)")
