"""Preprocessing is Darknet's own resize_image, so camera-sized frames give Darknet's outputs."""
import cv2
import numpy as np
import pytest

from darknet_files import make_params, numpy_forward, write_weights
from detector.model.engines import create_engine
from detector.model.predictor import Predictor
from detector.model.preprocess import to_blob
from detector.model.weights_store import load_model


def darknet_resize_loops(image, w, h):
    """resize_image from Darknet's image.c, loop for loop in float32 (the inner loop over
    channels and pixels of one row or column is vectorised). image: (c, H, W) float32."""
    channels, im_h, im_w = image.shape
    part = np.zeros((channels, im_h, w), np.float32)
    w_scale = np.float32(im_w - 1) / np.float32(w - 1)
    h_scale = np.float32(im_h - 1) / np.float32(h - 1)
    for c in range(w):
        if c == w - 1 or im_w == 1:
            part[:, :, c] = image[:, :, im_w - 1]
        else:
            sx = np.float32(c) * w_scale
            ix = int(sx)
            dx = np.float32(sx - np.float32(ix))
            part[:, :, c] = (np.float32(1) - dx) * image[:, :, ix] + dx * image[:, :, ix + 1]
    resized = np.zeros((channels, h, w), np.float32)
    for r in range(h):
        sy = np.float32(r) * h_scale
        iy = int(sy)
        dy = np.float32(sy - np.float32(iy))
        resized[:, r, :] = (np.float32(1) - dy) * part[:, iy, :]
        if r == h - 1 or im_h == 1:
            continue
        resized[:, r, :] += dy * part[:, iy + 1, :]
    return resized


def darknet_input(frame_bgr, w=448, h=448):
    """What Darknet's network sees: the image as RGB bytes / 255, then resize_image."""
    rgb01 = (frame_bgr[..., ::-1].transpose(2, 0, 1) / np.float32(255.0)).astype(np.float32)
    return darknet_resize_loops(rgb01, w, h)


def camera_frame(height, width, seed):
    """Lossless camera-like frame: smooth colour fields with edges and sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([128 + 90 * np.sin(x / (17 + 5 * c) + c) * np.cos(y / (23 - 4 * c)) for c in range(3)], axis=-1)
    image[height // 3:height // 2, width // 4:width // 2] = (200, 40, 90)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("height, width, out_w, out_h", [
    (480, 640, 448, 448), (576, 768, 448, 448),  # camera sizes
    (1, 1, 448, 448), (5, 1, 448, 448), (1, 9, 448, 448),  # one pixel wide or high
    (100, 37, 448, 448), (3, 2, 7, 5),  # upscaling, odd sizes
    (600, 449, 448, 448), (31, 700, 13, 29),  # one pixel more than the output; non-square output
    (448, 448, 448, 448), (29, 13, 13, 29),  # already the input size (training's augmented images)
])
def test_resize_is_darknets(height, width, out_w, out_h):
    frame_bgr = np.random.default_rng(height * 1000 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    blob = to_blob(frame_bgr, out_w, out_h)
    assert blob.shape == (1, 3, out_h, out_w) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[0], darknet_input(frame_bgr, out_w, out_h), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["yolo-tiny", "yolov1-tiny"])
def test_camera_sized_frames_give_darknets_outputs(name, tmp_path):
    """Raw outputs on 640x480 and 768x576 frames within 2e-5 of the largest output of a float64
    forward pass on Darknet-resized input; OpenCV's resize (the old preprocessing) misses that."""
    layers = make_params(name, seed=21)
    write_weights(tmp_path / "w.weights", layers)
    predictor = Predictor(create_engine(load_model(tmp_path / "w.weights"), "onnxruntime"))
    for (height, width), seed in (((480, 640), 1), ((576, 768), 2)):
        frame_bgr = camera_frame(height, width, seed)
        reference = numpy_forward(name, layers, darknet_input(frame_bgr))
        largest = np.abs(reference).max()
        error = np.abs(predictor.predict(frame_bgr).raw - reference).max() / largest
        assert error <= 2e-5, (name, width, height, error)
        opencv_blob = cv2.dnn.blobFromImage(frame_bgr, 1 / 255.0, (448, 448), swapRB=True)
        opencv_error = np.abs(predictor.engine.infer(opencv_blob)[0] - reference).max() / largest
        assert opencv_error > 2e-5  # the comparison is sharp enough to see the other resize
