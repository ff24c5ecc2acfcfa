"""Datasets: the three accepted forms read correctly, every bad kind stops with one clear error
naming the file (and line), and nothing is written into the input."""
import os

import numpy as np
import pytest

from dataset_files import write_darknet_folder, write_voc
from detector.errors import UserError
from detector.train.dataset import DecodedImages, label_path_for, load_dataset


def snapshot(root):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_darknet_folder_reads_labels_and_images_lazily(tmp_path):
    root = write_darknet_folder(tmp_path / "data", {
        "a.png": "0 0.5 0.5 0.2 0.4\n\n1 0.25 0.75 0.1 0.1\n",
        "sub/b.jpg": "",  # an image without objects
    })
    before = snapshot(root)
    dataset = load_dataset(root)
    assert len(dataset) == 2 and dataset.class_names == ("person", "dog")
    first = dataset[0]
    assert first.path.endswith("a.png") and first.image_bgr.shape == (48, 64, 3)
    np.testing.assert_array_equal(first.labels.class_ids, [0, 1])
    np.testing.assert_allclose(first.labels.boxes_norm, [[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.1, 0.1]])
    np.testing.assert_array_equal(first.labels.weights, [1, 1])
    assert len(dataset[1].labels) == 0
    assert snapshot(root) == before  # nothing written into the input


def test_list_file_finds_labels_as_darknet_does(tmp_path):
    root = write_darknet_folder(tmp_path / "data", {"x.png": "14 0.5 0.5 0.3 0.6\n"}, classes_txt=False)
    list_file = tmp_path / "train.txt"
    list_file.write_text(f"data/images/x.png\n{root / 'images' / 'x.png'}\n")
    dataset = load_dataset(list_file)
    assert len(dataset) == 2 and dataset.class_names[14] == "person"  # no classes.txt: the VOC names
    np.testing.assert_array_equal(dataset.labels[0].class_ids, [14])
    assert label_path_for(root / "JPEGImages" / "images" / "y.jpeg") == root / "JPEGImages" / "labels" / "y.txt"


def test_voc_root_converts_boxes_and_leaves_out_difficult(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {
        "000001": (200, 100, [("person", 0, 11, 21, 51, 81), ("dog", 1, 1, 1, 10, 10), ("zebra", 0, 1, 1, 5, 5)]),
        "000002": (100, 100, [("dog", 0, 1, 1, 100, 100)]),
    }, split="test")
    dataset = load_dataset(f"{root}:test")
    assert len(dataset) == 2
    person = dataset.labels[0]
    np.testing.assert_array_equal(person.class_ids, [14])  # difficult dog and unknown zebra left out
    # voc_label.py: centre (min + max) / 2 - 1, size max - min, over the image size
    np.testing.assert_allclose(person.boxes_norm, [[(31 - 1) / 200, (51 - 1) / 100, 40 / 200, 60 / 100]], rtol=1e-6)
    only_person = load_dataset(f"{root}:test", names=["person"])
    assert only_person.class_names == ("person",) and len(only_person.labels[1]) == 0
    with pytest.raises(UserError, match=r"trainval\.txt: split file not found"):
        load_dataset(root)


def test_voc_xml_with_entities_is_refused(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"000001": (100, 100, [("person", 0, 1, 1, 50, 50)])})
    xml = root / "Annotations" / "000001.xml"
    xml.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                   "<annotation><size><width>9</width><height>9</height></size>&e;</annotation>")
    with pytest.raises(UserError, match="000001.xml: XML with a DOCTYPE"):
        load_dataset(root)
    xml.write_text("<annotation>\n<size><width>9</width>\n</annotation>")
    with pytest.raises(UserError, match=r"000001\.xml:3: not well-formed XML"):
        load_dataset(root)


BAD_LABELS = [
    ("7 0.5 0.5 0.1 0.1", r"a\.txt:2: class id 7 is out of range: this dataset has 2 classes"),
    ("1.5 0.5 0.5 0.1 0.1", r"a\.txt:2: class id must be a whole number, found '1\.5'"),
    ("0 0.5 abc 0.1 0.1", r"a\.txt:2: coordinates must be numbers, found 'abc'"),
    ("0 0.5 1.2 0.1 0.1", r"a\.txt:2: coordinates must be normalised .* found 1\.2"),
    ("0 0.5 nan 0.1 0.1", r"a\.txt:2: coordinates must be normalised .* found nan"),
    ("0 0.5 0.5 0.1", r"a\.txt:2: expected 5 fields 'class cx cy w h', found 4"),
]


@pytest.mark.parametrize("line, message", BAD_LABELS, ids=["class-range", "class-float", "non-numeric",
                                                           "out-of-range", "nan", "field-count"])
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    root = write_darknet_folder(tmp_path / "data", {"a.png": f"0 0.5 0.5 0.2 0.2\n{line}\n"})
    with pytest.raises(UserError, match=message):
        load_dataset(root)


def test_missing_and_unreadable_images_and_empty_datasets(tmp_path):
    root = write_darknet_folder(tmp_path / "data", {"a.png": "0 0.5 0.5 0.2 0.2\n", "b.png": ""})
    (root / "images" / "b.png").write_bytes(b"not an image at all")
    with pytest.raises(UserError, match=r"b\.png: not an image OpenCV can read"):
        load_dataset(root)
    list_file = tmp_path / "list.txt"
    list_file.write_text("data/images/a.png\ndata/images/gone.png\n")
    with pytest.raises(UserError, match=r"gone\.png: image file not found"):
        load_dataset(list_file)
    (root / "labels" / "a.txt").unlink()
    with pytest.raises(UserError, match=r"a\.txt: label file not found .*1 more problem"):
        load_dataset(root)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "classes.txt").write_text("person\n")
    with pytest.raises(UserError, match="empty dataset"):
        load_dataset(empty)
    (empty / "classes.txt").unlink()
    with pytest.raises(UserError, match=r"classes\.txt: not found"):
        load_dataset(empty)
    with pytest.raises(UserError, match="given names are"):
        load_dataset(root, names=["cat", "dog"])


def test_truncated_image_is_a_clear_error_when_read(tmp_path):
    root = write_darknet_folder(tmp_path / "data", {"a.png": ""})
    image = root / "images" / "a.png"
    image.write_bytes(image.read_bytes()[:40])  # a PNG signature, then nothing usable
    dataset = load_dataset(root)
    with pytest.raises(UserError, match=r"a\.png: cannot read this image"):
        dataset[0]
    assert os.path.getsize(image) == 40


def test_decoded_images_are_kept_up_to_the_budget_and_read_only(tmp_path):
    root = write_darknet_folder(tmp_path / "data", {"a.png": "0 0.5 0.5 0.2 0.4\n", "b.png": "", "c.png": ""})
    dataset = load_dataset(root)
    one_image = dataset[0].image_bgr.nbytes  # 64x48x3: every image of the folder has this size
    images = DecodedImages(dataset, budget_bytes=2 * one_image + 10)
    first = [images[index] for index in range(3)]
    for index, sample in enumerate(first):
        np.testing.assert_array_equal(sample.image_bgr, dataset[index].image_bgr)
        assert sample.path == dataset[index].path
        np.testing.assert_array_equal(sample.labels.boxes_norm, dataset[index].labels.boxes_norm)
    assert images[0].image_bgr is first[0].image_bgr and images[1].image_bgr is first[1].image_bgr
    assert images[2].image_bgr is not first[2].image_bgr  # over the budget: decoded again
    assert images.kept_bytes == 2 * one_image
    with pytest.raises(ValueError, match="read-only"):
        images[0].image_bgr[0, 0, 0] = 1
    (root / "images" / "c.png").unlink()  # an image not kept still reports a missing file clearly
    with pytest.raises(UserError, match="c.png: cannot read this image"):
        images[2]
