"""A network that "detects" rendered figures, for daemon tests that need detections to follow
what is in the frames: a Darknet cfg of one linear [connected] layer over a 28x28 input feeding a
7x7 [detection] layer (one box per cell), and its weights written as a Darknet .weights file.

The figures: a coloured torso filling one cell (40 x 30 pixels of a 280 x 210 frame) on a dark
background, green legs below. A cell's confidence is its mean (red + blue - green); its box is centred
on the bottom of the cell, and the more blue the cell, the larger the box: a blue figure is "nearer"
than a red one. Every number here is computed from Darknet's v1 output layout, not by the product.
"""
import numpy as np

from darknet_files import write_weights

SIDE, SIZE, CLASSES, PERSON = 7, 28, 20, 14
FRAME_W, FRAME_H = 280, 210
CELL_W, CELL_H = FRAME_W // SIDE, FRAME_H // SIDE
BACKGROUND_BGR, LEGS_BGR = (30, 30, 30), (0, 150, 0)
RED_BGR, BLUE_BGR = (0, 0, 230), (230, 0, 0)

CFG = f"""[net]
batch=1
height={SIZE}
width={SIZE}
channels=3

[connected]
output={SIDE * SIDE * (CLASSES + 5)}
activation=linear

[detection]
classes={CLASSES}
coords=4
rescore=1
side={SIDE}
num=1
softmax=0
sqrt=1
jitter=0.2
object_scale=1
noobject_scale=0.5
class_scale=1
coord_scale=5
"""


def write_figure_network(folder):
    """(cfg path, weights path)."""
    cells, inputs = SIDE * SIDE, 3 * SIZE * SIZE
    weights = np.zeros((cells * (CLASSES + 5), inputs), np.float32)
    biases = np.zeros(cells * (CLASSES + 5), np.float32)
    pixels = SIZE // SIDE
    for cell in range(cells):
        row, col = divmod(cell, SIDE)
        inside = np.zeros((SIZE, SIZE), np.float32)
        inside[row * pixels:(row + 1) * pixels, col * pixels:(col + 1) * pixels] = 1.0 / pixels ** 2
        red, green, blue = (np.zeros((3, SIZE, SIZE), np.float32) for _ in range(3))
        red[0], green[1], blue[2] = inside, inside, inside   # the input is planar RGB in [0, 1]
        biases[cell * CLASSES + PERSON] = 1.0                 # class score: always a person
        confidence = cells * CLASSES + cell
        weights[confidence] = (red - green + blue).reshape(-1)
        biases[confidence] = -0.3                             # the dark background stays below zero
        coords = cells * (CLASSES + 1) + cell * 4
        biases[coords:coords + 2] = (0.5, 1.0)                # centre: the middle of the cell's bottom edge
        biases[coords + 2], weights[coords + 2] = 0.3, (0.15 * blue).reshape(-1)  # sqrt(w): 0.09 red, 0.2 blue
        biases[coords + 3], weights[coords + 3] = 0.5, (0.25 * blue).reshape(-1)  # sqrt(h): 0.25 red, 0.56 blue
    cfg, weights_path = folder / "figures.cfg", folder / "figures.weights"
    cfg.write_text(CFG)
    write_weights(weights_path, [("fc", {"biases": biases, "weights": weights})])
    return cfg, weights_path


def draw_figure(image, col, row, torso_bgr):
    """A figure whose torso fills cell (col, row), legs below it."""
    left, top = col * CELL_W, row * CELL_H
    image[top:top + CELL_H, left + 4:left + CELL_W - 4] = torso_bgr
    image[top + CELL_H:top + 2 * CELL_H, left + 10:left + CELL_W - 10] = LEGS_BGR


def frame_with(figures):
    """A BGR frame with figures [(col, row, torso_bgr)]."""
    image = np.full((FRAME_H, FRAME_W, 3), BACKGROUND_BGR, np.uint8)
    for col, row, colour in figures:
        draw_figure(image, col, row, colour)
    return image
