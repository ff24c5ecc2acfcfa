"""Small datasets written to disk in the three accepted forms, for the training-data tests."""
from pathlib import Path

import cv2
import numpy as np

from darknet_files import person_last_layer, write_weights

# A 20-class v1 network small enough to load in milliseconds: conv 4 -> three 2x2 pools -> connected
SMALL_CFG = """[net]
width=64
height=64
channels=3
[convolutional]
filters=4
size=3
stride=1
pad=1
activation=leaky
[maxpool]
[maxpool]
[maxpool]
[connected]
output=1470
activation=linear
[detection]
classes=20
side=7
num=2
sqrt=1
"""


def write_small_person_model(folder, x=0.75, y=0.4, w=0.2, h=0.5, confidence=0.8):
    """(weights, cfg) of a small network that reports one VOC person at (x, y, w, h) on any image:
    its last layer has zero weights and biases laid out as the detection layer reads them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    conv = {"biases": rng.normal(0, 0.1, 4), "weights": rng.normal(0, 0.3, (4, 3, 3, 3))}
    _, biases = person_last_layer("yolov1-tiny", x, y, w, h, confidence)
    fc = {"biases": biases, "weights": np.zeros((1470, 4 * 8 * 8))}
    weights, cfg = folder / "small-person.weights", folder / "small.cfg"
    write_weights(weights, [("conv", {k: v.astype(np.float32) for k, v in conv.items()}), ("fc", fc)])
    cfg.write_text(SMALL_CFG)
    return weights, cfg


def write_image(path, width=64, height=48, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return path


def write_darknet_folder(root, labels_by_name, class_names=("person", "dog"), classes_txt=True):
    """labels_by_name: {'a.png': 'label file text' or None (no label file)}."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for index, (name, text) in enumerate(labels_by_name.items()):
        write_image(root / "images" / name, seed=index)
        if text is not None:
            label = (root / "labels" / name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    if classes_txt:
        (root / "classes.txt").write_text("\n".join(class_names) + "\n")
    return root


VOC_XML = """<annotation>
  <filename>{image_id}.jpg</filename>
  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
  {objects}
</annotation>"""

VOC_OBJECT = """<object><name>{name}</name><difficult>{difficult}</difficult>
  <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"""


def write_voc(root, images, split="trainval"):
    """images: {image_id: (width, height, [(name, difficult, xmin, ymin, xmax, ymax), ...])}."""
    root = Path(root)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for index, (image_id, (width, height, objects)) in enumerate(images.items()):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", width, height, seed=index)
        body = "\n".join(VOC_OBJECT.format(name=n, difficult=d, xmin=x0, ymin=y0, xmax=x1, ymax=y1)
                         for n, d, x0, y0, x1, y1 in objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            VOC_XML.format(image_id=image_id, width=width, height=height, objects=body))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(images) + "\n")
    return root
