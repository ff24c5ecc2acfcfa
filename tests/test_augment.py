"""Each augmentation on its own: the image changes as described and the boxes follow it."""
import numpy as np
import pytest

from detector.train import augment
from detector.train.labels import LabelBoxes, Sample


def white_box_image(width, height, left, top, right, bottom):
    image = np.zeros((height, width, 3), np.uint8)
    image[top:bottom, left:right] = 255
    return image


def box_of_white(image):
    """Normalised (cx, cy, w, h) of the pixels brighter than mid-grey."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    h, w = image.shape[:2]
    left, right, top, bottom = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return np.array([(left + right) / 2 / w, (top + bottom) / 2 / h, (right - left) / w, (bottom - top) / h])


def labels_for(*boxes, classes=None):
    return LabelBoxes(np.arange(len(boxes)) if classes is None else classes, np.array(boxes, np.float32))


@pytest.mark.parametrize("sides", [(10, 30, 5, 15), (-20, -10, -8, -30), (25, -25, -10, 12)])
def test_crop_moves_boxes_with_the_pixels(sides):
    image = white_box_image(200, 100, 60, 30, 140, 70)
    labels = labels_for(box_of_white(image))
    cropped, moved = augment.crop(image, labels, *sides)
    left, right, top, bottom = sides
    assert cropped.shape == (100 - top - bottom, 200 - left - right, 3)
    np.testing.assert_allclose(moved.boxes_norm[0], box_of_white(cropped), atol=1e-6)


def test_crop_clips_boxes_at_the_edge_and_drops_boxes_outside():
    image = white_box_image(100, 100, 0, 0, 30, 30)
    labels = labels_for([0.15, 0.15, 0.3, 0.3], [0.9, 0.9, 0.1, 0.1], classes=[3, 5])
    cropped, moved = augment.crop(image, labels, 10, 20, 10, 20)  # keeps x, y in [10, 80)
    np.testing.assert_array_equal(moved.class_ids, [3])  # the box in the far corner left the crop
    np.testing.assert_allclose(moved.boxes_norm[0], box_of_white(cropped), atol=1e-6)
    np.testing.assert_allclose(moved.boxes_norm[0], [10 / 70, 10 / 70, 20 / 70, 20 / 70], atol=1e-6)


def test_random_jitter_stays_within_the_fraction():
    rng = np.random.default_rng(0)
    image = np.zeros((100, 200, 3), np.uint8)
    sizes = {augment.random_jitter_crop(image, LabelBoxes.empty(), 0.2, rng)[0].shape[:2] for _ in range(50)}
    heights, widths = zip(*sizes)
    assert 60 <= min(heights) and max(heights) <= 140 and 120 <= min(widths) and max(widths) <= 280
    assert len(sizes) > 10  # it does vary


def test_hflip_mirrors_image_and_boxes():
    image = white_box_image(100, 50, 10, 5, 30, 25)
    flipped, labels = augment.hflip(image, labels_for(box_of_white(image)))
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    np.testing.assert_allclose(labels.boxes_norm[0], box_of_white(flipped), atol=1e-6)
    assert labels.boxes_norm[0, 0] == pytest.approx(0.8)


def test_hsv_identity_exposure_and_hue_turn():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.abs(augment.distort_hsv(image, 0.0, 1.0, 1.0).astype(int) - image).max() <= 1
    dark = np.full((2, 2, 3), (20, 40, 60), np.uint8)
    np.testing.assert_allclose(augment.distort_hsv(dark, 0.0, 1.0, 2.0)[0, 0], (40, 80, 120), atol=1)
    np.testing.assert_allclose(augment.distort_hsv(dark, 0.0, 0.0, 1.0)[0, 0], (60, 60, 60), atol=1)  # grey: V kept
    red = np.full((2, 2, 3), (0, 0, 255), np.uint8)
    np.testing.assert_array_equal(augment.distort_hsv(red, 1 / 3, 1.0, 1.0)[0, 0], (0, 255, 0))  # red -> green
    np.testing.assert_array_equal(augment.distort_hsv(red, -2 / 3, 1.0, 1.0)[0, 0], (0, 255, 0))  # wraps


def test_random_scale_follows_darknet_range():
    rng = np.random.default_rng(2)
    scales = np.array([augment.random_scale(1.5, rng) for _ in range(400)])
    assert scales.min() >= 1 / 1.5 - 1e-9 and scales.max() <= 1.5
    assert 0.35 < np.mean(scales > 1) < 0.65  # s or 1/s with equal chance


def test_mixup_blends_images_and_weights_boxes():
    a = Sample(np.full((4, 4, 3), 200, np.uint8), LabelBoxes([1], [[0.5, 0.5, 0.2, 0.2]]), "a")
    b = Sample(np.full((4, 4, 3), 100, np.uint8), LabelBoxes([2, 3], [[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.3, 0.3]],
                                                             weights=[1.0, 0.5]), "b")
    mixed = augment.mixup(a, b, 0.3)
    assert (mixed.image_bgr == 130).all()
    np.testing.assert_array_equal(mixed.labels.class_ids, [1, 2, 3])
    np.testing.assert_allclose(mixed.labels.weights, [0.3, 0.7, 0.35])
    with pytest.raises(ValueError):
        augment.mixup(a, Sample(np.zeros((5, 4, 3), np.uint8), LabelBoxes.empty()), 0.5)


def test_corruptions():
    rng = np.random.default_rng(3)
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, ::2] = 200  # fine stripes: what blur removes and JPEG disturbs
    def stripe_contrast(img):
        return float(np.abs(np.diff(img[..., 0].astype(float), axis=1)).mean())
    assert stripe_contrast(augment.blur(image, 1.5)) < 0.2 * stripe_contrast(image)
    assert stripe_contrast(augment.motion_blur(image, 7, 0.0)) < 0.3 * stripe_contrast(image)
    grey = np.full((64, 64, 3), 128, np.uint8)
    assert 7 < augment.noise(grey, 8.0, rng).astype(float).std() < 9
    compressed = augment.jpeg(image, 10)
    assert compressed.shape == image.shape and not np.array_equal(compressed, image)
    assert abs(compressed.astype(float).mean() - image.mean()) < 10
    np.testing.assert_array_equal(augment.brightness(grey, 0.5), np.full_like(grey, 64))


def test_augmenter_policies(tmp_path):
    sample = Sample(white_box_image(160, 120, 40, 30, 120, 90), labels_for([0.5, 0.5, 0.5, 0.5]), "s")
    params = augment.AugmentParams(64, 48)
    assert augment.make_augmenter("none", params, np.random.default_rng(0))(sample) is sample
    outputs = [augment.make_augmenter("default", params, np.random.default_rng(seed))(sample) for seed in (5, 5, 6)]
    assert outputs[0].image_bgr.shape == (48, 64, 3) and len(outputs[0].labels) == 1
    np.testing.assert_array_equal(outputs[0].image_bgr, outputs[1].image_bgr)  # the seed reproduces a run
    assert not np.array_equal(outputs[0].image_bgr, outputs[2].image_bgr)
    mixing = augment.make_augmenter("none", params, np.random.default_rng(0), mixup_alpha=1.5)
    assert mixing.wants_partner
    mixed = mixing(sample, partner=Sample(np.zeros((30, 40, 3), np.uint8), labels_for([0.2, 0.2, 0.1, 0.1]), "p"))
    assert mixed.image_bgr.shape == (48, 64, 3) and len(mixed.labels) == 2
    assert mixed.labels.weights.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        augment.make_augmenter("heavy", params, np.random.default_rng(0))
    cfg = tmp_path / "small.cfg"
    cfg.write_text("[net]\nwidth=112\nheight=96\nsaturation=.75\n[detection]\njitter=.1\n")
    assert augment.AugmentParams.from_cfg(cfg) == augment.AugmentParams(112, 96, jitter=0.1, saturation=0.75)


def test_resize_is_darknets_like_inference():
    """Training resizes as inference does (Darknet's resize_image), to the byte after rounding."""
    from test_preprocess import camera_frame, darknet_resize_loops
    frame_bgr = camera_frame(64, 80, seed=5)
    resized = augment.resize(frame_bgr, 56, 48)
    rgb01 = (frame_bgr[..., ::-1].transpose(2, 0, 1) / np.float32(255.0)).astype(np.float32)
    expected = np.rint(darknet_resize_loops(rgb01, 56, 48)[::-1].transpose(1, 2, 0) * 255)
    assert resized.shape == (48, 56, 3) and resized.dtype == np.uint8
    assert np.abs(resized.astype(np.int16) - expected).max() <= 1
    assert augment.resize(frame_bgr, 80, 64) is frame_bgr
