"""Small datasets written to disk in the three accepted forms, for the training-data tests."""
from pathlib import Path

import cv2
import numpy as np


def write_image(path, width=64, height=48, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return path


def write_darknet_folder(root, labels_by_name, class_names=("person", "dog"), classes_txt=True):
    """labels_by_name: {'a.png': 'label file text' or None (no label file)}."""
    root = Path(root)
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
