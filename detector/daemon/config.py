"""The daemon's configuration: one validated object built from defaults, a TOML file and the
command line (in that order of precedence, the command line winning)."""
from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..model.classnames import read_names
from ..model.decode import VOC_CLASSES
from ..errors import EX_CONFIG, UserError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib


@dataclass(frozen=True)
class Config:
    source: str = "0"               # camera index, video file, URL, or "synthetic"
    loop: bool = False              # restart a video file at its end instead of reporting camera_lost
    weights: str | None = None
    cfg: str | None = None
    engine: str | None = None       # None: the fastest CPU engine
    device: str = "cpu"
    precision: str = "fp32"         # int8: the quantized graph on the onnxruntime engine
    calibration: str | None = None  # folder of photos calibrating the int8 graph (None: generated frames)
    low_memory: bool = False        # onnxruntime fp32 without weight prepacking: smaller, slower
    threshold: float = 0.2
    nms: float = 0.5
    classes: tuple = ()             # classes published in `detections`; () = all
    names: str | None = None        # class names file (one a line); None: the 20 VOC names
    target_class: str = "person"    # the class the `person` topic follows
    pub: str = "tcp://127.0.0.1:5556"
    http: str | None = "127.0.0.1:8080"
    max_frames: int | None = None
    log_level: str = "info"
    demo: bool = False
    track_iou: float = 0.3          # overlap that keeps the lock on the same person
    track_grace_s: float = 0.5      # how long a lost target is held before `found` goes false
    frozen_s: float = 1.0           # a camera or stream whose picture stands still this long is camera_lost
    smoothing: float = 0.0          # 0: raw boxes; towards 1: heavier exponential smoothing
    status_interval_s: float = 1.0
    send_hwm: int = 10              # ZeroMQ send queue per subscriber, in messages
    jpeg_quality: int = 80
    camera_width: int | None = None     # asked of a camera (V4L2); None: the driver's default
    camera_height: int | None = None
    camera_fps: float | None = None
    camera_fourcc: str | None = None    # pixel format asked of a camera, e.g. "MJPG" or "YUYV"
    max_fps: float | None = None        # cap on processed frames per second; None: as fast as frames come
    http_token: str | None = None   # required by every HTTP endpoint but /healthz; see http_insecure
    http_insecure: bool = False     # allow a non-loopback --http address without a token

    @property
    def http_address(self) -> tuple | None:
        if self.http is None:
            return None
        host, _, port = self.http.rpartition(":")
        return host.strip("[]"), int(port)


FIELD_TYPES = {f.name: f.type for f in fields(Config)}
# Shorter would take a camera delivering a few frames a second for frozen; longer lets the robot
# follow a stale picture for longer (docs/safety.md).
FROZEN_S_RANGE = (0.3, 5.0)


def _fail(key: str, expected: str, value) -> UserError:
    return UserError(f"config: '{key}' must be {expected}, found {value!r}", EX_CONFIG)


# What each annotation in Config admits; every key is checked against it before its own rules.
_TYPES = {"str": ((str,), "text"), "bool": ((bool,), "true or false"), "int": ((int,), "a whole number"),
          "float": ((int, float), "a number"), "tuple": ((list, tuple, str), "a list of names")}


def _check_type(key: str, value) -> None:
    annotation = FIELD_TYPES[key]
    optional = annotation.endswith(" | None")
    if value is None and optional:
        return
    base = annotation.removesuffix(" | None")
    if base not in _TYPES:
        return  # a key of another shape checks itself in validate()
    types, expected = _TYPES[base]
    wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
    if annotation.startswith("tuple") and isinstance(value, (list, tuple)):
        wrong = not all(isinstance(item, str) for item in value)
    if not wrong and isinstance(value, float) and not math.isfinite(value):
        expected, wrong = "a finite number", True
    if wrong:
        shown = "a value of type " + type(value).__name__ if key.endswith("token") else value  # never echo a secret
        raise _fail(key, expected + (" (or left out)" if optional else ""), shown)


def _fraction(key, value, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 or (high_open and value == 1):
        raise _fail(key, "a number in [0, 1" + (")" if high_open else "]"), value)
    return float(value)


def validate(config: Config) -> Config:
    """Check every value; return a normalised copy or raise UserError (exit code 78)."""
    c = config
    for key in FIELD_TYPES:
        _check_type(key, getattr(c, key))
    if not c.source:
        raise _fail("source", "a camera index, a file, a URL or 'synthetic'", c.source)
    if c.device not in ("cpu", "auto") and not re.fullmatch(r"gpu(:\d+)?", str(c.device)):
        raise _fail("device", "cpu, gpu, gpu:N or auto", c.device)
    if c.precision not in ("fp32", "int8"):
        raise _fail("precision", "fp32 or int8", c.precision)
    if c.calibration is not None and not isinstance(c.calibration, str):
        raise _fail("calibration", "a folder of photos", c.calibration)
    threshold, nms = _fraction("threshold", c.threshold), _fraction("nms", c.nms)
    track_iou, smoothing = _fraction("track_iou", c.track_iou), _fraction("smoothing", c.smoothing, high_open=True)
    classes = tuple(c.classes.split(",")) if isinstance(c.classes, str) else tuple(c.classes)
    classes = tuple(name.strip() for name in classes if name.strip())
    if c.names is not None and not isinstance(c.names, str):
        raise _fail("names", "the path of a class names file", c.names)
    known = read_names(c.names) if c.names is not None else VOC_CLASSES
    unknown = [name for name in classes if name not in known]
    if unknown:
        raise _fail("classes", f"names from: {', '.join(known)}", ",".join(unknown))
    if c.target_class not in known:
        raise _fail("target_class", f"one of the class names ({', '.join(known)})", c.target_class)
    if not re.fullmatch(r"(tcp://[^\s]+:\d+|ipc://\S+|inproc://\S+)", str(c.pub)):
        raise _fail("pub", "a ZeroMQ endpoint like tcp://127.0.0.1:5556", c.pub)
    if c.http is not None and str(c.http).startswith("["):
        raise _fail("http", "an IPv4 address or host name with a port, like 127.0.0.1:8080 (the debug stream "
                    "does not listen on IPv6)", c.http)
    if c.http is not None:
        match = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[\w.\-]+):(\d+)", str(c.http))
        if not match or not 0 <= int(match.group(2)) <= 65535:
            raise _fail("http", "HOST:PORT like 127.0.0.1:8080", c.http)
    for key in ("max_frames", "send_hwm", "jpeg_quality", "camera_width", "camera_height"):
        value = getattr(c, key)
        if value is None and key in ("max_frames", "camera_width", "camera_height"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(key, "a positive whole number", value)
    if not 1 <= c.jpeg_quality <= 100:
        raise _fail("jpeg_quality", "a whole number from 1 to 100", c.jpeg_quality)
    for key in ("track_grace_s", "status_interval_s"):
        value = getattr(c, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise _fail(key, "a number of seconds >= 0", value)
    if not FROZEN_S_RANGE[0] <= c.frozen_s <= FROZEN_S_RANGE[1]:  # its type is checked above
        raise _fail("frozen_s", "a number of seconds from {} to {}".format(*FROZEN_S_RANGE), c.frozen_s)
    for key in ("camera_fps", "max_fps"):
        value = getattr(c, key)
        if value is not None and not value > 0:
            raise _fail(key, "a number of frames per second > 0", value)
    if c.camera_fourcc is not None and not re.fullmatch(r"[0-9A-Za-z ]{1,4}", c.camera_fourcc):
        raise _fail("camera_fourcc", "a pixel format code of up to 4 letters or digits, like MJPG or YUYV "
                    "(`v4l2-ctl --list-formats-ext` lists a camera's)", c.camera_fourcc)
    if c.log_level not in ("debug", "info", "warning", "error"):
        raise _fail("log_level", "debug, info, warning or error", c.log_level)
    for key in ("loop", "demo", "http_insecure", "low_memory"):
        if not isinstance(getattr(c, key), bool):
            raise _fail(key, "true or false", getattr(c, key))
    _check_http_access(c)
    return replace(c, threshold=threshold, nms=nms, track_iou=track_iou, smoothing=smoothing, classes=classes,
                   track_grace_s=float(c.track_grace_s), status_interval_s=float(c.status_interval_s),
                   frozen_s=float(c.frozen_s))


MIN_TOKEN_CHARS = 16


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses; any other name may resolve to anything."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_http_access(c: Config) -> None:
    """The debug stream shows the camera picture: off loopback it needs a token (or an explicit waiver)."""
    token = c.http_token
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS
                              or not re.fullmatch(r"[\x21-\x7e]+", token)):
        # never echo the value: it may be a real secret with a typo
        shown = f"{len(token)} characters" if isinstance(token, str) else f"a {type(token).__name__}"
        raise UserError(f"config: 'http_token' must be at least {MIN_TOKEN_CHARS} printable characters without "
                        f"spaces, found {shown}; make one with `openssl rand -hex 16`", EX_CONFIG)
    if c.http is None or token is not None or c.http_insecure:
        return
    host = c.http.rpartition(":")[0].strip("[]")
    if not is_loopback_host(host):
        raise UserError(f"the debug stream would serve the camera picture on {c.http} to anyone who can reach it: "
                        "set an access token with --http-token (better: the ROBOT_DETECTOR_HTTP_TOKEN environment "
                        "variable, or http_token in a config file only root can read), or pass --http-insecure to "
                        "allow it without one", EX_CONFIG)


def read_toml(path) -> dict:
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror}", EX_CONFIG) from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {path} is not valid TOML: {error}", EX_CONFIG) from None
    unknown = sorted(set(values) - set(FIELD_TYPES))
    if unknown:
        raise UserError(f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: "
                        f"{', '.join(FIELD_TYPES)}", EX_CONFIG)
    if isinstance(values.get("source"), int) and not isinstance(values.get("source"), bool):
        values["source"] = str(values["source"])  # `source = 0` is a camera index
    if values.get("http") is False:
        values["http"] = None
    return values


def load_config(path=None, overrides: dict | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` (CLI values that were given)."""
    values = read_toml(Path(path)) if path else {}
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return validate(Config(**values))
