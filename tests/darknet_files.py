"""Test-side knowledge of Tiny-YOLO v1, written independently of the product: the two
architectures as docs/design/darknet-v1.md states them, a Darknet .weights writer (modern and legacy),
a seed-layout .npz writer, and a plain NumPy forward pass to check every engine against."""
import struct

import numpy as np

# (filters, batch_normalize) per convolution; a 2x2/2 max-pool follows each of the first six.
ARCHITECTURES = {
    "yolo-tiny": {"crop": True, "convs": [(f, False) for f in (16, 32, 64, 128, 256, 512, 1024, 1024, 1024)],
                  "connected": [(256, "linear"), (4096, "leaky"), (1470, "linear")],
                  "file_bytes": 180_357_512},
    "yolov1-tiny": {"crop": False, "convs": [(f, True) for f in (16, 32, 64, 128, 256, 512, 1024, 256)],
                    "connected": [(1470, "linear")], "file_bytes": 108_399_816},
}


def make_params(name, seed=0, last_layer=None):
    """Layer parameters in file order: [("conv", {...}) | ("fc", {...})], random but well scaled.
    last_layer: optional (weights, biases) replacing the final connected layer's values."""
    rng = np.random.default_rng(seed)
    arch = ARCHITECTURES[name]
    layers, channels = [], 3
    for filters, bn in arch["convs"]:
        p = {"biases": rng.normal(0, 0.1, filters)}
        if bn:
            p["scales"] = rng.uniform(0.5, 1.5, filters)
            p["rolling_mean"] = rng.normal(0, 0.2, filters)
            p["rolling_variance"] = rng.uniform(0.2, 2.0, filters)
        p["weights"] = rng.standard_normal((filters, channels, 3, 3)) * np.sqrt(2.0 / (channels * 9))
        layers.append(("conv", {k: v.astype(np.float32) for k, v in p.items()}))
        channels = filters
    inputs = channels * 7 * 7
    for outputs, _ in arch["connected"]:
        p = {"biases": rng.normal(0, 0.1, outputs),
             "weights": rng.standard_normal((outputs, inputs)) * np.sqrt(2.0 / inputs)}
        layers.append(("fc", {k: v.astype(np.float32) for k, v in p.items()}))
        inputs = outputs
    if last_layer is not None:
        weights, biases = last_layer
        layers[-1] = ("fc", {"biases": np.asarray(biases, np.float32), "weights": np.asarray(weights, np.float32)})
    return layers


def write_weights(path, layers, header="modern"):
    """header: 'modern' (0.1.0, int32 seen: 16 bytes), 'modern64' (0.2.0, int64 seen: 20 bytes) or
    'legacy' (lr, momentum, decay as float32 + int32 seen; connected matrices stored [in][out])."""
    with open(path, "wb") as f:
        if header == "modern":
            f.write(struct.pack("<4i", 0, 1, 0, 32013312))
        elif header == "modern64":
            f.write(struct.pack("<3iq", 0, 2, 0, 32013312))
        elif header == "legacy":
            f.write(struct.pack("<3fi", 0.0001, 0.9, 0.0005, 32013312))
        else:
            raise ValueError(header)
        for kind, p in layers:
            order = ["biases", "scales", "rolling_mean", "rolling_variance", "weights"]
            for key in order:
                if key not in p:
                    continue
                value = p[key]
                if kind == "fc" and key == "weights" and header == "legacy":
                    value = value.T
                f.write(np.ascontiguousarray(value, dtype="<f4").tobytes())


def write_seed_npz(path, layers, prefix=""):
    """The seed program's Chainer layout (2015 model only)."""
    names = ["c1", "c3", "c5", "c7", "c9", "c11", "c13", "c14", "c15", "l16", "l17", "l19"]
    arrays = {}
    for name, (_, p) in zip(names, layers):
        arrays[prefix + name + "/W"] = p["weights"]
        arrays[prefix + name + "/b"] = p["biases"]
    np.savez(path, **arrays)


def _conv3x3(x, weights, biases):
    c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    columns = np.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=1)
    columns = columns.reshape(c * 9, h * w)  # rows ordered (channel, ky, kx) like the filters
    return (weights.reshape(len(weights), -1) @ columns).reshape(-1, h, w) + biases[:, None, None]


def numpy_forward(name, layers, image_rgb01):
    """Darknet's arithmetic in float64: image_rgb01 is (3, 448, 448) RGB in [0, 1]."""
    arch = ARCHITECTURES[name]
    x = image_rgb01.astype(np.float64)
    if arch["crop"]:
        x = x * 2 - 1
    conv_layers = [p for kind, p in layers if kind == "conv"]
    for i, p in enumerate(conv_layers):
        if "scales" in p:
            x = _conv3x3(x, p["weights"].astype(np.float64), np.zeros(len(p["biases"])))
            x = (x - p["rolling_mean"][:, None, None]) / (np.sqrt(p["rolling_variance"][:, None, None].astype(np.float64)) + 1e-6)
            x = x * p["scales"][:, None, None] + p["biases"][:, None, None]
        else:
            x = _conv3x3(x, p["weights"].astype(np.float64), p["biases"].astype(np.float64))
        x = np.where(x > 0, x, 0.1 * x)
        if i < 6:
            c, h, w = x.shape
            x = x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))
    x = x.reshape(-1)
    for (_, p), (_, activation) in zip([l for l in layers if l[0] == "fc"], arch["connected"]):
        x = p["weights"].astype(np.float64) @ x + p["biases"]
        if activation == "leaky":
            x = np.where(x > 0, x, 0.1 * x)
    return x


def person_last_layer(name, x, y, w, h, confidence=0.8):
    """Final connected layer with zero weights whose biases make the network report one person
    at (x, y, w, h), normalised; computed here from the detection layout, not by the product."""
    inputs = ARCHITECTURES[name]["connected"][-2][0] if len(ARCHITECTURES[name]["connected"]) > 1 else 256 * 49
    biases = np.zeros(1470, np.float32)
    col, row = int(x * 7), int(y * 7)
    cell = row * 7 + col
    biases[cell * 20 + 14] = 1.0
    biases[980 + cell * 2] = confidence
    biases[1078 + cell * 2 * 4:1078 + cell * 2 * 4 + 4] = [x * 7 - col, y * 7 - row, np.sqrt(w), np.sqrt(h)]
    return np.zeros((1470, inputs), np.float32), biases
