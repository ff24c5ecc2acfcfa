"""Darknet v1 cfg files parsed into a typed network description, and the cfgs shipped with the package.

Only the layers the Tiny-YOLO v1 family uses are accepted; anything else is a clear error rather
than a silently different network. Shapes are tracked through the layers so that parameter counts
(and therefore exact weights-file sizes) follow from the cfg alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..errors import EX_CONFIG, UserError

ACTIVATIONS = ("leaky", "linear", "relu")
CFG_DIR = Path(__file__).resolve().parent / "cfgs"  # package data: the shipped cfgs


@dataclass(frozen=True)
class Crop:
    """Test-time crop layer: the crop equals the input, so it only maps [0, 1] to [-1, 1]."""


@dataclass(frozen=True)
class Convolutional:
    in_channels: int
    filters: int
    size: int
    stride: int
    pad: int  # pixels on each side
    batch_normalize: bool
    activation: str


@dataclass(frozen=True)
class MaxPool:
    size: int
    stride: int


@dataclass(frozen=True)
class Connected:
    inputs: int
    outputs: int
    activation: str


@dataclass(frozen=True)
class Dropout:
    """Identity at test time; in training drops with `probability` and scales the rest up."""
    probability: float = 0.5


@dataclass(frozen=True)
class DetectionLayer:
    """The v1 detection layer. Defaults are Darknet's (parse_detection) where the cfg says nothing."""
    classes: int
    side: int
    num: int  # boxes per cell
    sqrt: bool  # the network predicts sqrt(w), sqrt(h)
    rescore: bool = False  # responsible box's confidence target: its IoU (True) or 1
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    class_scale: float = 1.0
    coord_scale: float = 1.0
    jitter: float = 0.2  # random crop of up to this fraction per side (the loader's augmentation)


LR_POLICIES = ("constant", "steps", "step", "exp", "poly")


@dataclass(frozen=True)
class TrainingParams:
    """[net]'s training options, with Darknet's defaults (parse_net_options)."""
    batch: int = 1
    learning_rate: float = 0.001
    momentum: float = 0.9
    decay: float = 0.0001
    policy: str = "constant"
    steps: tuple = ()      # policy=steps: iterations at which the rate is multiplied ...
    scales: tuple = ()     # ... by these factors
    step: int = 1          # policy=step: every `step` iterations multiply by `scale`
    scale: float = 1.0
    gamma: float = 1.0     # policy=exp
    power: float = 4.0     # policy=poly and the burn-in curve
    burn_in: int = 0
    max_batches: int = 0
    exposure: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0

    def learning_rate_at(self, iteration: int, base: float | None = None) -> float:
        """Darknet's get_current_rate for 0-based `iteration`; `base` replaces learning_rate."""
        rate = self.learning_rate if base is None else base
        if iteration < self.burn_in:
            return rate * (iteration / self.burn_in) ** self.power
        if self.policy == "steps":
            for step, scale in zip(self.steps, self.scales):
                if step > iteration:
                    break
                rate *= scale
            return rate
        if self.policy == "step":
            return rate * self.scale ** (iteration // self.step)
        if self.policy == "exp":
            return rate * self.gamma ** iteration
        if self.policy == "poly":
            return rate * (1 - iteration / self.max_batches) ** self.power if self.max_batches else rate
        return rate


Layer = Union[Crop, Convolutional, MaxPool, Connected, Dropout, DetectionLayer]


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    width: int
    height: int
    channels: int
    layers: tuple
    outputs: int
    training: TrainingParams = TrainingParams()

    @property
    def detection(self) -> DetectionLayer:
        return self.layers[-1]

    @property
    def input_range(self) -> str:
        return "[-1, 1]" if any(isinstance(layer, Crop) for layer in self.layers) else "[0, 1]"

    def parameter_shapes(self, index: int) -> list:
        """(name, shape) of layer `index`'s parameters in the order a .weights file stores them."""
        layer = self.layers[index]
        if isinstance(layer, Convolutional):
            n = layer.filters
            shapes = [("biases", (n,))]
            if layer.batch_normalize:
                shapes += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
            return shapes + [("weights", (n, layer.in_channels, layer.size, layer.size))]
        if isinstance(layer, Connected):
            return [("biases", (layer.outputs,)), ("weights", (layer.outputs, layer.inputs))]
        return []

    @property
    def parameter_count(self) -> int:
        total = 0
        for index in range(len(self.layers)):
            for _, shape in self.parameter_shapes(index):
                count = 1
                for dim in shape:
                    count *= dim
                total += count
        return total


def _sections(text: str, source: str) -> list:
    sections = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise UserError(f"{source}:{number}: expected a section header like [convolutional], found {raw.strip()!r}")
            sections.append((line[1:-1].strip().lower(), {}, number))
            continue
        if "=" not in line:
            raise UserError(f"{source}:{number}: expected 'key=value', found {raw.strip()!r}")
        if not sections:
            raise UserError(f"{source}:{number}: option {line!r} comes before any [section]")
        key, value = (part.strip() for part in line.split("=", 1))
        sections[-1][1][key] = value
    return sections


class _Options:
    """Typed reads of one section's options, with errors that name the cfg line."""

    def __init__(self, options: dict, where: str):
        self.options = options
        self.where = where

    def int(self, key: str, default=None) -> int:
        if key not in self.options:
            if default is None:
                raise UserError(f"{self.where}: missing required option '{key}'")
            return default
        try:
            return int(self.options[key])
        except ValueError:
            raise UserError(f"{self.where}: option '{key}' must be an integer, found {self.options[key]!r}") from None

    def float(self, key: str, default: float) -> float:
        try:
            value = float(self.options.get(key, default))
        except ValueError:
            raise UserError(f"{self.where}: option '{key}' must be a number, found {self.options[key]!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise UserError(f"{self.where}: option '{key}' must be a finite number, found {self.options[key]!r}")
        return value

    def numbers(self, key: str, kind) -> tuple:
        text = self.options.get(key, "")
        try:
            return tuple(kind(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise UserError(f"{self.where}: option '{key}' must be comma-separated numbers, found {text!r}") from None

    def activation(self) -> str:
        value = self.options.get("activation", "logistic")
        if value not in ACTIVATIONS:
            raise UserError(f"{self.where}: activation '{value}' is not supported (supported: {', '.join(ACTIVATIONS)})")
        return value


def _training_params(net: _Options) -> TrainingParams:
    policy = net.options.get("policy", "constant")
    if policy not in LR_POLICIES:
        raise UserError(f"{net.where}: learning-rate policy '{policy}' is not supported (supported: {', '.join(LR_POLICIES)})")
    steps, scales = net.numbers("steps", int), net.numbers("scales", float)
    if policy == "steps" and len(steps) != len(scales):
        raise UserError(f"{net.where}: policy=steps needs as many scales as steps, found {len(steps)} steps "
                        f"and {len(scales)} scales")
    params = TrainingParams(
        batch=net.int("batch", 1), learning_rate=net.float("learning_rate", 0.001),
        momentum=net.float("momentum", 0.9), decay=net.float("decay", 0.0001), policy=policy,
        steps=steps, scales=scales, step=net.int("step", 1), scale=net.float("scale", 1.0),
        gamma=net.float("gamma", 1.0), power=net.float("power", 4.0), burn_in=net.int("burn_in", 0),
        max_batches=net.int("max_batches", 0), exposure=net.float("exposure", 1.0),
        saturation=net.float("saturation", 1.0), hue=net.float("hue", 0.0))
    if params.batch < 1 or params.step < 1 or params.burn_in < 0 or params.max_batches < 0:
        raise UserError(f"{net.where}: batch and step must be at least 1, burn_in and max_batches not negative")
    return params


def parse_cfg(text: str, name: str = "network", source: str = "<cfg>") -> NetworkSpec:
    sections = _sections(text, source)
    if not sections or sections[0][0] not in ("net", "network"):
        raise UserError(f"{source}: a Darknet cfg must start with a [net] section")
    net = _Options(sections[0][1], f"{source}:{sections[0][2]} [net]")
    width, height, channels = net.int("width"), net.int("height"), net.int("channels", 3)
    c, h, w = channels, height, width
    flat = None  # set once a connected layer has flattened the feature map
    layers = []
    for kind, options, number in sections[1:]:
        where = f"{source}:{number} [{kind}]"
        opt = _Options(options, where)
        if layers and isinstance(layers[-1], DetectionLayer):
            raise UserError(f"{where}: the [detection] layer must be the last layer")
        if kind == "crop":
            if layers:
                raise UserError(f"{where}: a crop layer is only supported as the first layer")
            if opt.int("crop_width", width) != width or opt.int("crop_height", height) != height:
                raise UserError(f"{where}: only a crop of the whole {width}x{height} input is supported")
            layers.append(Crop())
        elif kind in ("convolutional", "conv"):
            if flat is not None:
                raise UserError(f"{where}: a convolution after a connected layer is not supported")
            size, stride = opt.int("size", 1), opt.int("stride", 1)
            pad = size // 2 if opt.int("pad", 0) else opt.int("padding", 0)
            layer = Convolutional(c, opt.int("filters", 1), size, stride, pad,
                                  bool(opt.int("batch_normalize", 0)), opt.activation())
            c = layer.filters
            h = (h + 2 * pad - size) // stride + 1
            w = (w + 2 * pad - size) // stride + 1
            layers.append(layer)
        elif kind in ("maxpool", "max"):
            size, stride = opt.int("size", 2), opt.int("stride", 2)
            if size != stride or h % stride or w % stride:
                raise UserError(f"{where}: only non-overlapping max-pooling that divides the map evenly is "
                                f"supported (found size={size} stride={stride} on {h}x{w})")
            h, w = h // stride, w // stride
            layers.append(MaxPool(size, stride))
        elif kind in ("connected", "conn"):
            inputs = flat if flat is not None else c * h * w
            flat = opt.int("output", 1)
            layers.append(Connected(inputs, flat, opt.activation()))
        elif kind == "dropout":
            layers.append(Dropout(opt.float("probability", 0.5)))
        elif kind == "detection":
            layer = DetectionLayer(opt.int("classes", 1), opt.int("side", 7), opt.int("num", 1),
                              bool(opt.int("sqrt", 0)), bool(opt.int("rescore", 0)),
                              opt.float("object_scale", 1.0), opt.float("noobject_scale", 1.0),
                              opt.float("class_scale", 1.0), opt.float("coord_scale", 1.0),
                              opt.float("jitter", net.float("jitter", 0.2)))
            expected = layer.side * layer.side * (layer.num * 5 + layer.classes)
            found = flat if flat is not None else c * h * w
            if found != expected:
                raise UserError(f"{where}: side={layer.side}, num={layer.num}, classes={layer.classes} needs "
                                f"{expected} inputs, but the layer before gives {found}")
            if opt.int("softmax", 0) or opt.int("coords", 4) != 4:
                raise UserError(f"{where}: only softmax=0 and coords=4 (YOLO v1 detection) are supported")
            layers.append(layer)
        else:
            raise UserError(f"{where}: layer type [{kind}] is not supported; a Tiny-YOLO v1 cfg uses "
                            "crop, convolutional, maxpool, connected, dropout and detection")
    if not layers or not isinstance(layers[-1], DetectionLayer):
        raise UserError(f"{source}: the cfg must end with a [detection] layer (YOLO v1)")
    detection = layers[-1]
    return NetworkSpec(name, width, height, channels, tuple(layers),
                       detection.side ** 2 * (detection.num * 5 + detection.classes), _training_params(net))


def load_cfg(path) -> NetworkSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read cfg file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text Darknet cfg file") from None
    return parse_cfg(text, name=path.stem, source=str(path))


def shipped_specs() -> dict:
    """The cfgs shipped with the package, by model name."""
    return {path.stem: load_cfg(path) for path in sorted(CFG_DIR.glob("*.cfg"))}


def load_spec(cfg) -> NetworkSpec:
    """`--cfg`: a cfg file's path, or the name of a shipped model (`yolov1-tiny`, `yolo-tiny`), so
    that commands work the same from a clone and from an installed package."""
    path = Path(cfg)
    if not path.exists() and (CFG_DIR / f"{cfg}.cfg").is_file():
        path = CFG_DIR / f"{cfg}.cfg"
    elif not path.exists():
        raise UserError(f"cfg {cfg} not found: expected a Darknet cfg file or a shipped model name "
                        f"({', '.join(sorted(shipped_specs()))})", EX_CONFIG)
    return load_cfg(path)
