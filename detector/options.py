"""The one option table: every value a user can give `robot-detector`, on the command line or as a
key of the daemon's TOML config, with its type, range (both ends inclusive), default and help.

`detector.cli` builds its arguments from this table and `detector.daemon.config` builds and checks
the daemon's configuration from it, so an option's rules are written here and nowhere else. The
ranges keep the system's promises: no grace or hold longer than a few seconds, no rate or interval
that leaves a robot driving on stale data. docs/configuration.md shows the same table (a test
compares them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .model.cfg import CFG_DIR
from .model.engines import ENGINES, GPU_DEVICE, PRECISIONS
from .model.weights_store import PRETRAINED
from .train.augment import POLICIES as AUGMENT_POLICIES

LOG_LEVELS = ("debug", "info", "warning", "error")
LOCK_MODES = ("auto", "manual")
DAEMON = "run"  # the command whose options are also the keys of the TOML config
MODEL_COMMANDS = ("run", "detect", "evaluate", "bench", "collect")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class OptionError(ValueError):
    """A value outside an option's rules; the message says what was expected."""


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses; any other name may resolve to anything."""
    import ipaddress
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- checks of text values: each returns None, or what was expected ---

def _device(value: str):
    """cpu, gpu, gpu:N or auto"""
    return None if value in ("cpu", "auto") or GPU_DEVICE.fullmatch(value) else "cpu, gpu, gpu:N or auto"


def _endpoint(value: str):
    """tcp://HOST:PORT or ipc://PATH (another process must reach it: not inproc://)"""
    if value.startswith("inproc://"):
        return ("a tcp:// or ipc:// endpoint (inproc:// reaches only threads of the same process, so no "
                "client could ever connect)")
    tcp = re.fullmatch(r"tcp://\S+:(\d+|\*)", value)  # port * : one the system picks
    if (tcp and (tcp.group(1) == "*" or int(tcp.group(1)) <= 65535)) or re.fullmatch(r"ipc://\S+", value):
        return None
    return "a ZeroMQ endpoint like tcp://127.0.0.1:5556 or ipc:///run/robot-detector/detector.sock"


def _http_address(value: str):
    """HOST:PORT, IPv4 or a host name"""
    if value.startswith("["):
        return ("an IPv4 address or host name with a port, like 127.0.0.1:8080 (the debug stream does not "
                "listen on IPv6)")
    match = re.fullmatch(r"[\w.\-]+:(\d{1,5})", value)
    return None if match and int(match.group(1)) <= 65535 else "HOST:PORT like 127.0.0.1:8080"


def _fourcc(value: str):
    """up to 4 letters or digits"""
    if re.fullmatch(r"[0-9A-Za-z ]{1,4}", value):
        return None
    return ("a pixel format code of up to 4 letters or digits, like MJPG or YUYV (`v4l2-ctl --list-formats-ext` "
            "lists a camera's)")


MIN_TOKEN_CHARS = 16


def _token(value: str):
    """at least 16 printable characters, no spaces"""
    if len(value) >= MIN_TOKEN_CHARS and re.fullmatch(r"[\x21-\x7e]+", value):
        return None
    return (f"at least {MIN_TOKEN_CHARS} printable characters without spaces (make one with "
            "`openssl rand -hex 16`)")


def _not_empty(value: str):
    """not empty"""
    return None if value.strip() else "a camera index, a file, a URL or 'synthetic'"


def _url(value: str):
    """an http://, https:// or file:// URL"""
    return None if re.fullmatch(r"(https?|file)://\S+", value) else "an http://, https:// or file:// URL"


def _image_out(suffixes):
    """A check of an image file to write: its type, and a folder to write it in."""
    def check(value: str):
        path = Path(value)
        if path.suffix.lower() not in suffixes:
            return f"an image file name ending in {_one_of(suffixes)}"
        if not path.parent.is_dir():
            return "a file in an existing folder"
        return None
    check.__doc__ = f"a file name ending in {_one_of(suffixes)} in an existing folder"
    return check


@dataclass(frozen=True)
class Option:
    key: str                    # TOML key (for `run`) and the name the code reads it by
    help: str
    commands: tuple             # the commands that take it; DAEMON: also a TOML config key
    kind: str = "text"          # text | bool | int | float | interval (LOW,HIGH) | choice | names | list
    default: object = None      # None: not set (the command or the model decides)
    low: float | None = None    # range of int and float options, both ends included
    high: float | None = None
    unit: str = ""              # "seconds", "frames per second", ...: in messages and docs
    choices: tuple = ()         # choice: the values; list: the values each item may take
    check: object = None        # text: a function value -> None or what was expected (its docstring:
                                # the rule, in the docs)
    flag: str | None = ""       # "" -> --key-with-dashes; None: a config-file key only
    metavar: str | None = None
    secret: bool = False        # never echoed in an error message
    can_be_off: bool = False    # None (TOML: false) turns it off although it has a default
    every_command: bool = False  # a flag of every command, before or after its name (cli.build_parser)

    @property
    def default_text(self) -> str:
        """The default as the help and the docs show it."""
        if isinstance(self.default, tuple):
            return ",".join(map(str, self.default)) or "all"
        if self.default is None:
            return "-"
        return str(self.default).lower() if isinstance(self.default, bool) else str(self.default)

    @property
    def cli_flag(self) -> str | None:
        return "--" + self.key.replace("_", "-") if self.flag == "" else self.flag

    def expected(self) -> str:
        """What a valid value looks like, for messages and the docs."""
        if self.kind in ("int", "float"):
            what = "a whole number" if self.kind == "int" else "a number"
            if self.unit:
                what += f" of {self.unit}"
            return f"{what} from {_number(self.low)} to {_number(self.high)}"
        if self.kind == "interval":
            return f"LOW,HIGH with {_number(self.low)} <= LOW < HIGH <= {_number(self.high)}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return _one_of(self.choices)
        if self.kind == "names":
            return "a list of names"
        if self.kind == "list":
            return "a comma-separated list of " + _one_of(self.choices)
        return "text"

    def from_text(self, text: str):
        """A command-line value, converted and checked."""
        if self.kind in ("int", "float", "interval"):
            try:
                value = (int(text) if self.kind == "int" else float(text) if self.kind == "float"
                         else [float(item) for item in text.split(",")])
            except ValueError:
                raise OptionError(self.expected()) from None
        elif self.kind in ("names", "list"):
            value = [item.strip() for item in text.split(",") if item.strip()]
        else:
            value = text
        return self.validate(value)

    def validate(self, value):
        """`value` (from TOML, the command line or Python), normalised; OptionError if it breaks the rules."""
        if value is None and (self.default is None or self.can_be_off):
            return None
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise OptionError(self.expected())
            return value
        if kind in ("int", "float"):
            allowed = (int,) if kind == "int" else (int, float)
            # `not low <= value <= high` also refuses nan
            if isinstance(value, bool) or not isinstance(value, allowed) or not self.low <= value <= self.high:
                raise OptionError(self.expected())
            return float(value) if kind == "float" else value
        if kind == "interval":
            if (not isinstance(value, (list, tuple)) or len(value) != 2
                    or not all(isinstance(end, (int, float)) and not isinstance(end, bool) for end in value)
                    or not self.low <= value[0] < value[1] <= self.high):
                raise OptionError(self.expected())
            return tuple(float(end) for end in value)
        if kind in ("names", "list"):
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
                raise OptionError(self.expected())
            items = tuple(item.strip() for item in items if item.strip())
            if kind == "list" and not (items and all(item in self.choices for item in items)):
                raise OptionError(self.expected())
            return items
        if not isinstance(value, str):
            raise OptionError(self.expected())
        if kind == "choice" and value not in self.choices:
            raise OptionError(self.expected())
        problem = self.check(value) if self.check else None
        if problem:
            raise OptionError(problem)
        return value

    def shown(self, value) -> str:
        """`value` as an error message may show it."""
        if self.secret:
            return f"{len(value)} characters" if isinstance(value, str) else f"a value of type {type(value).__name__}"
        return repr(value)


def _number(value) -> str:
    """1.0 -> 1, 1000000 -> 1_000_000 (a form Python and TOML both read)."""
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:_}" if value >= 100_000 else str(value)


def _one_of(choices) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


def _o(key, help, commands: str, kind="text", **rules) -> Option:
    """An Option, its commands given as one space-separated string."""
    return Option(key, help, tuple(commands.split()), kind, **rules)


MODEL = " ".join(MODEL_COMMANDS)

OPTIONS = (
    # --- the daemon: every one also a TOML key ---
    _o("source", "camera index (0), video file, rtsp/http URL, or 'synthetic'", "run collect", default="0",
       check=_not_empty),
    _o("loop", "replay a video file when it ends instead of reporting camera_lost", "run", "bool", default=False),
    _o("weights", "Darknet .weights or seed .npz (default: the model file in the first folder of the search path "
       "that has one: $ROBOT_DETECTOR_WEIGHTS, ~/.local/share/robot-detector/weights, "
       "/var/lib/robot-detector/weights)", MODEL),
    _o("cfg", "Darknet cfg file, or a shipped model name: yolov1-tiny, yolo-tiny (default: chosen by the weights "
       "file's size)", MODEL),
    _o("engine", "inference engine (default: the fastest CPU engine)", "run detect evaluate collect", "choice",
       choices=tuple(ENGINES)),
    _o("device", "where the engine runs: cpu, gpu, gpu:N or auto", MODEL, default="cpu", check=_device),
    _o("precision", "fp32, or int8: a quantized graph on the onnxruntime engine", "run detect evaluate collect",
       "choice", default="fp32", choices=PRECISIONS),
    _o("calibration", "photos (JPEG/PNG) calibrating the int8 graph, ideally from the robot's camera "
       "(default: generated frames)", MODEL, metavar="DIR"),
    _o("low_memory", "onnxruntime without prepacking: a smaller footprint, slower on most CPUs", MODEL, "bool",
       default=False),
    _o("names", "class names, one a line, for models trained on other classes (default: the 20 VOC names)", MODEL,
       metavar="FILE"),
    _o("threshold", "class probability threshold", "run detect collect", "float", default=0.2, low=0.0, high=1.0),
    _o("nms", "per-class NMS IoU", "run detect collect", "float", default=0.5, low=0.0, high=1.0),
    _o("classes", "classes published in `detections` (comma-separated on the command line; default all)", "run",
       "names", default=()),
    _o("target_class", "the class the `person` topic follows (collect: the class --select looks at)",
       "run collect track",
       default="person", metavar="NAME"),
    _o("pub", "ZeroMQ PUB endpoint: tcp://HOST:PORT, or ipc://PATH (a socket file: no port another user can "
       "take)", "run", default="tcp://127.0.0.1:5556", check=_endpoint),
    _o("pub_insecure", "allow a non-loopback --pub address: the positions of people leave the machine "
       "unauthenticated", "run", "bool", default=False),
    _o("http", "debug stream address (TOML: false for none)", "run", default="127.0.0.1:8080", check=_http_address,
       metavar="HOST:PORT", can_be_off=True),
    _o("http_token", "access token for the debug stream (visible in `ps`: prefer http_token in the config file "
       "or $ROBOT_DETECTOR_HTTP_TOKEN)", "run", check=_token, secret=True, metavar="TOKEN"),
    _o("http_insecure", "allow a non-loopback --http address without a token", "run", "bool", default=False),
    _o("max_frames", "stop after N processed frames (default: run until stopped)", "run", "int", low=1,
       high=10**9, metavar="N"),
    _o("max_fps", "process at most this many frames a second, saving CPU (default: as fast as frames come)", "run",
       "float", low=1.0, high=1000.0, unit="frames per second"),
    _o("log_level", "log level (on the command line: of any command)", "run", "choice", default="info",
       choices=LOG_LEVELS, every_command=True),
    _o("demo", "synthetic source and generated weights reporting a planted person", "run", "bool", default=False),
    _o("track_grace_s", "how long an unseen target is held (reported at its predicted place) before `found` goes "
       "false", "run", "float", default=0.5, low=0.0, high=3.0, unit="seconds", flag=None),
    _o("smoothing", "0: raw boxes; towards 0.9: heavier exponential smoothing (more lag)", "run", "float",
       default=0.0, low=0.0, high=0.9, flag=None),
    _o("status_interval_s", "seconds between status heartbeats (a client drives only after one)", "run", "float",
       default=1.0, low=0.1, high=5.0, unit="seconds", flag=None),
    _o("send_hwm", "ZeroMQ send queue per subscriber, in messages", "run", "int", default=10, low=1, high=1000,
       flag=None),
    _o("jpeg_quality", "JPEG quality of the debug stream", "run", "int", default=80, low=1, high=100, flag=None),
    _o("frozen_s", "a picture unchanged this long is a frozen source (reported as camera_lost)", "run", "float",
       default=1.0, low=0.3, high=5.0, unit="seconds", flag=None),
    _o("relock_s", "after the target's last sighting, only the same person may be taken again for this long",
       "run track", "float", default=2.0, low=0.0, high=30.0, unit="seconds"),
    _o("lock", "auto: follow the largest person when nobody is followed; manual: only a person chosen on the "
       "debug page", "run track", "choice", default="auto", choices=LOCK_MODES),
    _o("appearance", "re-take the lost target by the colours of its clothes (--no-appearance: do not)", "run",
       "bool", default=True, flag="--no-appearance"),
    _o("camera_width", "frame width to ask of a V4L2 camera", "run", "int", low=16, high=7680, unit="pixels",
       flag="--width"),
    _o("camera_height", "frame height to ask of a V4L2 camera", "run", "int", low=16, high=4320, unit="pixels",
       flag="--height"),
    _o("camera_fps", "frame rate to ask of a V4L2 camera", "run", "float", low=1.0, high=240.0,
       unit="frames per second", flag="--fps"),
    _o("camera_fourcc", "pixel format to ask of a V4L2 camera, e.g. MJPG", "run", check=_fourcc, flag="--fourcc",
       metavar="CODE"),

    # --- other commands ---
    _o("connect", "endpoint to subscribe to", "view", default="tcp://127.0.0.1:5556", check=_endpoint),
    _o("topic", "topics to print (default all)", "view", "list", choices=("person", "detections", "status")),
    _o("count", "exit after N messages", "view", "int", low=1, high=10**9, metavar="N"),
    _o("timeout", "exit after this long without a message", "view", "float", low=0.01, high=3600.0,
       unit="seconds"),
    _o("annotate", "save the image with boxes drawn", "detect", check=_image_out(IMAGE_SUFFIXES),
       metavar="OUT.png"),
    _o("iou", "IoU a detection needs to match a truth", "evaluate", "float", default=0.5, low=0.0, high=1.0),
    _o("engines", "engines to measure, or all", "bench", "list", default=("all",), choices=(*ENGINES, "all"),
       flag="--engine"),
    _o("precisions", "precisions to measure", "bench", "list", default=("fp32",), choices=PRECISIONS,
       flag="--precision"),
    _o("frames", "frames per engine", "bench", "int", default=50, low=1, high=100_000),
    _o("every", "at most one frame per this many seconds", "collect", "float", default=1.0, low=0.0, high=3600.0,
       unit="seconds"),
    _o("max", "stop after N frames (default: Ctrl-C stops)", "collect", "int", low=1, high=10**7, metavar="N"),
    _o("out", "dataset folder to add to", "collect", default="dataset"),
    _o("select", "which frames: all; uncertain (best --target-class score within --band); lost (the frames "
       "--around a moment the tracker lost its target)", "collect", "choice", default="all",
       choices=("all", "uncertain", "lost")),
    _o("band", "--select uncertain: best target score in (LOW, HIGH]", "collect", "interval", default=(0.1, 0.4),
       low=0.0, high=1.0, metavar="LOW,HIGH"),
    _o("around", "--select lost: seconds saved before and after each loss", "collect", "float", default=2.0,
       low=0.1, high=60.0, unit="seconds"),
    _o("min_change", "skip frames whose mean grey level differs from the last saved frame's by less "
       "(near-duplicates; 0 keeps all)", "collect", "float", default=0.01, low=0.0, high=1.0, metavar="FRACTION"),

    # --- label ---
    _o("http", "page address", "label", default="127.0.0.1:8090", check=_http_address, metavar="HOST:PORT"),
    _o("http_token", "access token (prefer $ROBOT_DETECTOR_HTTP_TOKEN or http_token in --config)", "label",
       check=_token, secret=True, metavar="TOKEN"),
    _o("http_insecure", "allow a non-loopback --http address without a token", "label", "bool", default=False),
    _o("low_confidence", "pre-filled boxes scored below P at collection are drawn dashed", "label", "float",
       default=0.5, low=0.0, high=1.0, metavar="P"),
    _o("source", "video source for --pipeline", "bench", default="synthetic", check=_not_empty),
    _o("model", "shipped cfg to benchmark with generated weights when --weights is not given", "bench", "choice",
       default="yolo-tiny", choices=tuple(path.stem for path in sorted(CFG_DIR.glob("*.cfg")))),

    # --- weights verify, weights fetch ---
    _o("cfg", "Darknet cfg file or shipped model name (default: chosen by the file's size)", "weights-verify"),
    _o("dest", "where to save (default: the first writable folder of the weights search path, see --weights)",
       "weights-fetch", metavar="DIR"),
    _o("model", "the pretrained model to download, or all", "weights-fetch", "choice", default="yolov1-tiny",
       choices=(*(p.cfg for p in PRETRAINED), "all")),
    _o("mirror", "base URL of a mirror holding the same file names", "weights-fetch", check=_url, metavar="URL"),

    # --- train ---
    _o("val", "held-out dataset: mAP@0.5 at the end (and every --eval-every)", "train", metavar="DATASET"),
    _o("eval_every", "evaluate --val every N iterations (0: only at the end)", "train", "int", default=0, low=0,
       high=10**7, metavar="N"),
    _o("cfg", "Darknet cfg file or shipped model name (default: chosen by --weights' size, else yolov1-tiny)",
       "train"),
    _o("weights", "initial weights: Darknet .weights (modern or legacy) or seed .npz (default: Darknet's random "
       "initialisation)", "train"),
    _o("names", "class names, one a line (default: the dataset's classes.txt)", "train", metavar="FILE"),
    _o("out", "output file (default: <cfg name>-trained.weights)", "train", metavar="OUT.weights"),
    _o("iterations", "batches to train (default: the cfg's max_batches, else 1000)", "train", "int", low=1,
       high=10**7),
    _o("batch", "images per iteration", "train", "int", default=8, low=1, high=1024),
    _o("optimizer", "adam (measured: docs/measurements/training.md), or sgd: Darknet's SGD with the cfg's rate and "
       "policy", "train", "choice",
       default="adam", choices=("adam", "sgd")),
    _o("lr", "learning rate (default: adam 0.001, a tenth of it for the run's last tenth; sgd the cfg's rate "
       "and policy)", "train", "float", low=0.0, high=10.0),
    _o("momentum", "SGD momentum (default: the cfg's)", "train", "float", low=0.0, high=0.999),
    _o("decay", "weight decay (default: the cfg's)", "train", "float", low=0.0, high=1.0),
    _o("augment", "default: jitter crop, flip, HSV, corruptions; none: only the resize", "train", "choice",
       default="default", choices=AUGMENT_POLICIES),
    _o("mixup", "mixup with Beta(ALPHA, ALPHA) (0: off)", "train", "float", default=0.0, low=0.0, high=100.0,
       metavar="ALPHA"),
    _o("freeze", "keep the first N cfg layers fixed", "train", "int", default=0, low=0, high=1000, metavar="N"),
    _o("device", "where training runs: cpu, gpu, gpu:N or auto", "train", default="cpu", check=_device),
    _o("image_cache_mb", "decoded training images kept in memory (0: decode each time it is drawn)", "train", "int",
       default=256, low=0, high=10**6, unit="MiB", metavar="MIB"),
    _o("seed", "random initialisation, sampling and augmentation seed", "train", "int", default=0, low=0,
       high=2**32 - 1),

    # --- simulate-follow: fields of the simulator's Scene (None: the Scene's default, given in the help) ---
    *(_o(key, help, "simulate-follow", kind, low=low, high=high, unit=unit, flag=flag, metavar=metavar)
      for key, flag, kind, low, high, unit, metavar, help in (
        ("delay_s", "--delay", "float", 0.0, 5.0, "seconds", "S", "capture -> robot delay (default 0.1)"),
        ("rate_hz", "--rate", "float", 1.0, 120.0, "messages per second", "HZ", "person messages per second "
         "(default 30)"),
        ("noise", "", "float", 0.0, 0.5, "", None, "std of each box edge, fraction of the frame (default 0.01)"),
        ("seed", "", "int", 0, 2**32 - 1, "", None, "noise seed (default 1)"),
        ("camera_height_m", "--camera-height", "float", 0.01, 5.0, "metres", "M", "camera height (default 0.2)"),
        ("hfov_deg", "--hfov", "float", 10.0, 170.0, "degrees", "DEG", "horizontal field of view (default 60)"),
        ("vfov_deg", "--vfov", "float", 10.0, 170.0, "degrees", "DEG", "vertical field of view (default 45)"),
        ("person_height_m", "--person-height", "float", 0.3, 2.5, "metres", "M", "person's height (default 1.7)"),
        ("person_width_m", "--person-width", "float", 0.1, 2.0, "metres", "M", "person's width (default 0.45)"),
        ("miss", "", "float", 0.0, 0.99, "", None, "share of detections missed at random (default 0)"),
        ("crosser_speed_m_s", "--crosser-speed", "float", 0.05, 5.0, "m/s", "M/S", "cross: the other person's "
         "speed (default 1.0)"),
        ("crosser_at_s", "--crosser-at", "float", 0.1, 600.0, "seconds", "S", "cross: when they cross the followed "
         "person's line (default 3)"),
        ("crosser_gap_m", "--crosser-gap", "float", -10.0, 10.0, "metres", "M", "cross: how far in front of the "
         "followed person they cross; negative: behind (default 0.5)"),
        ("walk_speed_m_s", "--walk-speed", "float", 0.01, 3.0, "m/s", "M/S", "walking speed (default 0.2)"),
        ("arc_radius_m", "--arc-radius", "float", 0.1, 100.0, "metres", "M", "radius of each arc (default 1.5)"),
        ("arc_deg", "", "float", 1.0, 360.0, "degrees", "DEG", "degrees turned in each arc (default 90)"),
        ("straight_s", "", "float", 0.0, 600.0, "seconds", "S", "straight walk before and after the arcs "
         "(default 2)"),
        ("stand_s", "", "float", 0.0, 600.0, "seconds", "S", "standing at the end (default 8)"),
        ("start_distance_m", "--start-distance", "float", 0.2, 20.0, "metres", "M", "person's distance at the "
         "start (default 1.0)"),
        ("wheel_radius_m", "--wheel-radius", "float", 0.005, 0.5, "metres", "M", "wheel radius (default 0.028)"),
        ("track_m", "--track", "float", 0.02, 2.0, "metres", "M", "distance between the wheels (default 0.12)"),
        ("motor_max_deg_s", "--motor-max", "float", 10.0, 5000.0, "degrees per second", "DEG/S", "motor speed at "
         "100%% (default 1050, an EV3 large motor)"),
        ("motor_tau_s", "--motor-tau", "float", 0.001, 5.0, "seconds", "S", "motor speed regulation time "
         "constant (default 0.1)"),
        ("distance_m", "--distance", "float", 0.2, 10.0, "metres", "M", "robot-client --distance (default 1.0)"),
        ("max_speed", "", "float", 1.0, 100.0, "percent", "PERCENT", "robot-client --max-speed (default 60)"),
    )),
    _o("path", "arcs: straight, left arc, right arc, straight, then stand; stand: stand only; cross: straight "
       "while another person crosses in between, then stand (default arcs)", "simulate-follow", "choice",
       choices=("arcs", "stand", "cross")),
    _o("png", "draw the run: paths from above, errors over time", "simulate-follow", check=_image_out((".png",)),
       metavar="OUT.png"),
)


def options_for(command: str) -> tuple:
    return tuple(option for option in OPTIONS if command in option.commands)


CONFIG_OPTIONS = {option.key: option for option in options_for(DAEMON)}


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(options) -> str:
    """`options` as the Markdown table docs/configuration.md shows (a test keeps them equal)."""
    rows = ["| key | flag | commands | value | default | what it does |", "|---|---|---|---|---|---|"]
    for option in options:
        value = option.expected() if option.kind != "text" else "text"
        if option.check:
            value = option.check.__doc__
        flag = f"`{option.cli_flag}`" if option.cli_flag else "(config file)"
        rows.append(f"| `{option.key}` | {flag} | {', '.join(option.commands)} | {_cell(value)} | "
                    f"{_cell(option.default_text)} | {_cell(option.help.replace('%%', '%'))} |")
    return "\n".join(rows)
