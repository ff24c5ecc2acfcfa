"""Small datasets written to disk in the three accepted forms, for the training-data tests."""
from pathlib import Path

import cv2
import numpy as np

from darknet_files import write_weights

# A v1 network small enough to load in milliseconds: conv 4 -> three 2x2 pools -> connected
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
output={outputs}
activation=linear
[detection]
classes={classes}
side=7
num=2
sqrt=1
"""


def planted_biases(classes, objects, side=7, num=2):
    """Last-layer biases that make a v1 detection layer report `objects`, each (class id, x, y, w, h,
    confidence), on any image: the layout is side*side class scores per class, then side*side*num
    confidences, then side*side*num boxes (x, y offsets in the cell, sqrt w, sqrt h)."""
    cells = side * side
    biases = np.zeros(cells * (classes + num * 5), np.float32)
    for class_id, x, y, w, h, confidence in objects:
        cell = int(y * side) * side + int(x * side)
        biases[cell * classes + class_id] = 1.0
        biases[cells * classes + cell * num] = confidence
        start = cells * (classes + num) + cell * num * 4
        biases[start:start + 4] = [x * side - int(x * side), y * side - int(y * side), np.sqrt(w), np.sqrt(h)]
    return biases


def write_small_model(folder, classes, objects, name="small"):
    """(weights, cfg) of a small network that reports `objects` (see planted_biases) on any image:
    its last layer has zero weights, so the output is its biases."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    conv = {"biases": rng.normal(0, 0.1, 4), "weights": rng.normal(0, 0.3, (4, 3, 3, 3))}
    biases = planted_biases(classes, objects)
    fc = {"biases": biases, "weights": np.zeros((len(biases), 4 * 8 * 8))}
    weights, cfg = folder / f"{name}.weights", folder / f"{name}.cfg"
    write_weights(weights, [("conv", {k: v.astype(np.float32) for k, v in conv.items()}), ("fc", fc)])
    cfg.write_text(SMALL_CFG.format(outputs=len(biases), classes=classes))
    return weights, cfg


def write_small_person_model(folder):
    """A 20-class small network reporting one VOC person (class 14) at (0.75, 0.4, 0.2, 0.5), p 0.8."""
    return write_small_model(folder, 20, [(14, 0.75, 0.4, 0.2, 0.5, 0.8)], "small-person")


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


def write_brightness_person_model(folder):
    """(weights, cfg): a small 20-class network reporting one VOC person (class 14) at (0.75, 0.4,
    0.2, 0.5) whose score follows the image's brightness (about its mean grey level / 255): every
    filter averages its 3x3 patch and the person's confidence is the mean of the features."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes, side, num = 20, 7, 2
    biases = planted_biases(classes, [(14, 0.75, 0.4, 0.2, 0.5, 0.0)])
    fc_weights = np.zeros((len(biases), 4 * 8 * 8), np.float32)
    cell = int(0.4 * side) * side + int(0.75 * side)
    fc_weights[side * side * classes + cell * num] = 1.0 / fc_weights.shape[1]
    conv = {"biases": np.zeros(4, np.float32), "weights": np.full((4, 3, 3, 3), 1.0 / 27, np.float32)}
    weights, cfg = folder / "brightness-person.weights", folder / "brightness-person.cfg"
    write_weights(weights, [("conv", conv), ("fc", {"biases": biases, "weights": fc_weights})])
    cfg.write_text(SMALL_CFG.format(outputs=len(biases), classes=classes))
    return weights, cfg


def write_brightness_clip(path, levels, fps=4.0, size=(160, 120)):
    """A video file (MJPG in AVI) whose frame i is grey level `levels[i]` with a block moving across
    it (so that no two frames are near-duplicates)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i, level in enumerate(levels):
        image = np.full((size[1], size[0], 3), level, np.uint8)
        x = (i * 23) % (size[0] - 40)
        image[40:80, x:x + 40] = np.clip(level + (60 if level < 128 else -60), 0, 255)
        writer.write(image)
    writer.release()
    return path
