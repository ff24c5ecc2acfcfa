"""The `robot-detector` command: argument parsing and error reporting, nothing else.

Every UserError becomes one clear message on stderr and its exit code; no user-facing command
ends in a bare traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .errors import EX_FAILURE, UserError

log = logging.getLogger("robot-detector")

HTTP_TOKEN_ENV = "ROBOT_DETECTOR_HTTP_TOKEN"
EX_SIGPIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, found '{text}'") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, found {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, found '{text}'") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, found {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, found '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, found {value}")
    return value


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number > 0, found '{text}'")
    return value


def add_model_arguments(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """--weights, --cfg, --engine, --device (and --threshold, --nms when `defaults`)."""
    from .model.engines import ENGINES
    parser.add_argument("--weights", help="Darknet .weights or seed .npz (default: the model file in the first "
                        "folder of the search path that has one: $ROBOT_DETECTOR_WEIGHTS, "
                        "~/.local/share/robot-detector/weights, /var/lib/robot-detector/weights)")
    parser.add_argument("--cfg", help="Darknet cfg file, or a shipped model name: yolov1-tiny, yolo-tiny (default: chosen by the weights file's size)")
    parser.add_argument("--engine", help=f"inference engine: {', '.join(ENGINES)} (default: the fastest CPU engine)")
    parser.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N or auto (default: cpu)")
    parser.add_argument("--names", metavar="FILE",
                        help="class names, one a line, for models trained on other classes (default: the 20 VOC names)")
    parser.add_argument("--precision", default="fp32", help="fp32, or int8: a quantized graph on the onnxruntime engine (default fp32; bench: a list, e.g. fp32,int8)")
    parser.add_argument("--calibration", metavar="DIR",
                        help="photos (JPEG/PNG) calibrating the int8 graph, ideally from the robot's camera "
                             "(default: generated frames)")
    if defaults:
        parser.add_argument("--threshold", type=fraction, default=0.2, help="class probability threshold (default 0.2)")
        parser.add_argument("--nms", type=fraction, default=0.5, help="per-class NMS IoU (default 0.5)")


def cmd_detect(args) -> int:
    from .detect import run_detect
    from .model.classnames import class_names_for
    from .model.engines import create_engine
    from .model.predictor import Predictor
    from .model.weights_store import load_model
    model = load_model(args.weights, args.cfg)
    names = class_names_for(model.spec, args.names) if args.names else None
    engine = create_engine(model, args.engine, args.device, args.precision, args.calibration)
    run_detect(Predictor(engine, args.threshold, args.nms, names), args.images, args.json, args.save_raw, args.annotate)
    return 0


def cmd_collect(args) -> int:
    from .model.classnames import class_names_for
    from .model.engines import create_engine
    from .model.predictor import Predictor
    from .model.weights_store import load_model
    from .train.collect import Selection, run_collect
    model = load_model(args.weights, args.cfg)
    names = class_names_for(model.spec, args.names)
    if args.target_class not in names:
        raise UserError(f"--target-class must be one of the class names ({', '.join(names)}), "
                        f"found '{args.target_class}'", 2)
    low, high = args.band
    selection = Selection(args.select, names.index(args.target_class), (low, high), args.around, args.min_change)
    engine = create_engine(model, args.engine, args.device, args.precision, args.calibration)
    # the uncertain band may reach below the threshold: decode down to its lower edge
    threshold = min(args.threshold, low) if args.select == "uncertain" else args.threshold
    run_collect(Predictor(engine, threshold, args.nms, names), names, args.source, args.out, args.every, args.max,
                selection)
    return 0


def band(text: str) -> tuple:
    low, _, high = text.partition(",")
    try:
        values = fraction(low), fraction(high)
    except argparse.ArgumentTypeError:
        values = None
    if values is None or not values[0] < values[1]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 <= LOW < HIGH <= 1, e.g. 0.1,0.4; found '{text}'")
    return values


def cmd_label(args) -> int:
    from .train.labelserver import run_label_server
    token = args.http_token or os.environ.get(HTTP_TOKEN_ENV) or None
    if token is None and args.config:
        from .daemon.config import read_toml
        token = read_toml(args.config).get("http_token")
    return run_label_server(args.dataset, args.http, token, args.http_insecure, args.low_confidence)


def cmd_evaluate(args) -> int:
    from .train.evaluate import run_evaluate
    run_evaluate(args.dataset, args.weights, args.cfg, args.engine, args.device, args.names, args.iou, args.json)
    return 0


def cmd_train(args) -> int:
    from .train.report import ConsoleReport
    from .train.trainer import TrainOptions, train
    options = {key: getattr(args, key) for key in TrainOptions.__dataclass_fields__ if hasattr(args, key)}
    console = ConsoleReport(args.json, sys.stderr.isatty())

    def show(record) -> None:
        for where, text in console.lines(record):
            if where == "log":
                log.info("%s", text)
            else:
                stream = sys.stdout if where == "stdout" else sys.stderr
                stream.write(text)
                stream.flush()

    result = train(TrainOptions(**options), show)
    return {"": 0, "SIGINT": 130, "SIGTERM": 143}[result.interrupted]


def cmd_bench(args) -> int:
    from .bench import run_bench
    from .model.engines import ENGINES, GPU_ENGINES, check_precision
    from .model.network import planted_model
    from .model.cfg import shipped_specs
    from .model.weights_store import load_model
    if args.weights:
        model = load_model(args.weights, args.cfg)
    else:
        specs = shipped_specs()
        if args.model not in specs:
            raise UserError(f"--model must be one of {', '.join(specs)}, found '{args.model}'")
        # Speed does not depend on parameter values; planted persons give decode realistic work.
        model = planted_model(specs[args.model], [(0.3, 0.5, 0.2, 0.6), (0.7, 0.45, 0.15, 0.5)])
    if args.names:  # checked so that a wrong file fails here as in `run`; names do not change timings
        from .model.classnames import class_names_for
        class_names_for(model.spec, args.names)
    if args.engine in (None, "all"):
        engines = list(GPU_ENGINES) if args.device not in ("cpu", "auto") else list(ENGINES)
    else:
        engines = [name.strip() for name in args.engine.split(",") if name.strip()]
    precisions = [name.strip() for name in args.precision.split(",") if name.strip()]
    for precision in precisions:
        check_precision("onnxruntime", precision)  # a known precision at all
    # Every engine at every precision it has; asked for by name, one it lacks is an error.
    runs = [(engine, precision) for precision in precisions for engine in engines
            if args.engine not in (None, "all") or precision in ENGINES[engine].precisions]
    for engine, precision in runs:
        check_precision(engine, precision)
    if not args.json:
        print(f"weights: {model.source}")
    if args.pipeline and not args.log_level:
        logging.getLogger().setLevel(logging.WARNING)  # the table, not the daemon's log
    run_bench(model, runs, args.device, args.frames, args.json, args.source if args.pipeline else None, args.calibration)
    return 0


def cmd_weights_verify(args) -> int:
    from .model.weights_store import verify
    report = verify(args.path, args.cfg)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>10}: {value}")
    return 0


def cmd_weights_fetch(args) -> int:
    from .model.weights_store import PRETRAINED, fetch
    models = [p.cfg for p in PRETRAINED] if args.model == "all" else [args.model]
    for item in fetch(args.dest, models, args.mirror):
        note = "" if item["sha256_pinned"] else " (size checked; no sha256 is pinned for this file yet)"
        print(f"saved {item['path']}: {item['bytes']:,} bytes, sha256 {item['sha256']}{note}")
    return 0


def cmd_run(args) -> int:
    from dataclasses import replace
    from .daemon.config import Config, load_config
    from .daemon.service import run_service
    overrides = {key: getattr(args, key, None) for key in Config.__dataclass_fields__}
    # The environment (e.g. a systemd EnvironmentFile readable by root only) keeps the token off
    # command lines that `ps` shows; it overrides the config file, the command line overrides both.
    overrides["http_token"] = args.http_token or os.environ.get(HTTP_TOKEN_ENV) or None
    config = load_config(args.config, overrides)
    if args.no_http:
        config = replace(config, http=None)
    logging.getLogger().setLevel(config.log_level.upper())
    return run_service(config)


def cmd_view(args) -> int:
    from .daemon.view import run_view
    return run_view(args.connect, args.topic, args.count, args.timeout)


def cmd_simulate_follow(args) -> int:
    from .sim.follow import Scene, simulate
    fields = {name: getattr(args, name) for name in Scene.__dataclass_fields__ if getattr(args, name, None) is not None}
    run = simulate(Scene(**fields))
    figures = run.figures()
    if args.png:
        from .sim.plot import draw
        draw(run, args.png, figures)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>30}: {'-' if value is None else round(value, 3)}")
        if args.png:
            print(f"picture: {args.png}")
    return 0


def add_simulate_follow_arguments(sim: argparse.ArgumentParser) -> None:
    """Every option is a field of sim.follow.Scene (defaults there)."""
    world = sim.add_argument_group("the world")
    world.add_argument("--delay", dest="delay_s", metavar="S", type=positive_number, help="capture -> robot delay, s (default 0.1)")
    world.add_argument("--rate", dest="rate_hz", metavar="HZ", type=positive_number, help="person messages per second (default 30)")
    world.add_argument("--noise", type=fraction, help="std of each box edge, fraction of the frame (default 0.01)")
    world.add_argument("--seed", type=int, help="noise seed (default 1)")
    world.add_argument("--camera-height", dest="camera_height_m", metavar="M", type=positive_number, help="m (default 0.2)")
    world.add_argument("--hfov", dest="hfov_deg", metavar="DEG", type=positive_number, help="degrees (default 60)")
    world.add_argument("--vfov", dest="vfov_deg", metavar="DEG", type=positive_number, help="degrees (default 45)")
    world.add_argument("--person-height", dest="person_height_m", metavar="M", type=positive_number, help="m (default 1.7)")
    world.add_argument("--person-width", dest="person_width_m", metavar="M", type=positive_number, help="m (default 0.45)")
    world.add_argument("--path", choices=["arcs", "stand"],
                       help="arcs: straight, left arc, right arc, straight, then stand; stand: stand only (default arcs)")
    world.add_argument("--walk-speed", dest="walk_speed_m_s", metavar="M/S", type=positive_number, help="m/s (default 0.2)")
    world.add_argument("--arc-radius", dest="arc_radius_m", metavar="M", type=positive_number, help="m (default 1.5)")
    world.add_argument("--arc-deg", metavar="DEG", type=positive_number, help="degrees turned in each arc (default 90)")
    world.add_argument("--straight-s", metavar="S", type=float, help="straight walk before and after the arcs, s (default 2)")
    world.add_argument("--stand-s", metavar="S", type=positive_number, help="standing at the end, s (default 8)")
    world.add_argument("--start-distance", dest="start_distance_m", metavar="M", type=positive_number,
                       help="person's distance at the start, m (default 1.0)")
    world.add_argument("--wheel-radius", dest="wheel_radius_m", metavar="M", type=positive_number, help="m (default 0.028)")
    world.add_argument("--track", dest="track_m", metavar="M", type=positive_number, help="distance between the wheels, m (default 0.12)")
    world.add_argument("--motor-max", dest="motor_max_deg_s", metavar="DEG/S", type=positive_number,
                       help="motor speed at 100%%, deg/s (default 1050, an EV3 large motor)")
    world.add_argument("--motor-tau", dest="motor_tau_s", metavar="S", type=positive_number,
                       help="motor speed regulation time constant, s (default 0.1)")
    robot = sim.add_argument_group("the robot client")
    robot.add_argument("--distance", dest="distance_m", metavar="M", type=positive_number, help="robot-client --distance, m (default 1.0)")
    robot.add_argument("--max-speed", metavar="PERCENT", type=positive_number, help="robot-client --max-speed, percent (default 60)")
    robot.add_argument("--client-option", dest="client_options", action="append", metavar="OPTION",
                       help="a further robot-client option, e.g. --client-option=--turn-gain=20 (repeatable)")
    sim.add_argument("--png", metavar="OUT.png", help="draw the run: paths from above, errors over time")
    sim.add_argument("--json", action="store_true", help="the figures as one JSON object")
    sim.set_defaults(handler=cmd_simulate_follow)


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Every option is also a key of the TOML config; None means 'not given here'."""
    run.add_argument("--config", metavar="FILE", help="TOML config file (command-line options override it)")
    run.add_argument("--source", help="camera index (0), video file, rtsp/http URL, or 'synthetic' (default 0)")
    run.add_argument("--loop", action="store_const", const=True, help="replay a video file when it ends")
    add_model_arguments(run, defaults=False)
    run.set_defaults(device=None, precision=None)
    run.add_argument("--threshold", type=fraction, help="class probability threshold (default 0.2)")
    run.add_argument("--nms", type=fraction, help="per-class NMS IoU (default 0.5)")
    run.add_argument("--classes", help="comma-separated classes to publish in `detections` (default all)")
    run.add_argument("--target-class", metavar="NAME", help="the class the `person` topic follows (default person)")
    run.add_argument("--pub", help="ZeroMQ PUB endpoint (default tcp://127.0.0.1:5556)")
    run.add_argument("--http", metavar="HOST:PORT", help="debug stream address (default 127.0.0.1:8080)")
    run.add_argument("--no-http", action="store_true", help="no debug stream")
    run.add_argument("--http-token", metavar="TOKEN",
                     help=f"access token for the debug stream (visible in `ps`: prefer http_token in the config "
                          f"file or ${HTTP_TOKEN_ENV})")
    run.add_argument("--http-insecure", action="store_const", const=True,
                     help="allow a non-loopback --http address without a token")
    run.add_argument("--max-frames", type=positive_int, help="stop after N processed frames")
    run.add_argument("--max-fps", type=positive_number, help="process at most this many frames a second (saves CPU)")
    camera = run.add_argument_group("camera format (V4L2 cameras; the log and `status` say what was granted)")
    camera.add_argument("--width", dest="camera_width", type=positive_int, help="frame width to ask for")
    camera.add_argument("--height", dest="camera_height", type=positive_int, help="frame height to ask for")
    camera.add_argument("--fps", dest="camera_fps", type=positive_number, help="frame rate to ask for")
    camera.add_argument("--fourcc", dest="camera_fourcc", metavar="CODE", help="pixel format to ask for, e.g. MJPG")
    run.add_argument("--demo", action="store_const", const=True,
                     help="synthetic source and generated weights reporting a planted person")
    run.set_defaults(handler=cmd_run)


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, found '{text}'") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, found {value}")
    return value


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("dataset", metavar="DATASET", help="Darknet-layout folder, list file of images, or VOC root[:split]")
    train.add_argument("--val", metavar="DATASET", help="held-out dataset: mAP@0.5 at the end (and every --eval-every)")
    train.add_argument("--eval-every", type=positive_int, default=0, metavar="N", help="evaluate --val every N iterations")
    train.add_argument("--cfg", help="Darknet cfg file or shipped model name (default: chosen by --weights' size, else yolov1-tiny)")
    train.add_argument("--weights", help="initial weights: Darknet .weights (modern or legacy) or seed .npz "
                                         "(default: Darknet's random initialisation)")
    train.add_argument("--names", metavar="FILE", help="class names, one a line (default: the dataset's classes.txt)")
    train.add_argument("--out", metavar="OUT.weights", help="output file (default: <cfg name>-trained.weights)")
    train.add_argument("--iterations", type=positive_int, help="batches to train (default: the cfg's max_batches, else 1000)")
    train.add_argument("--batch", type=positive_int, default=8, help="images per iteration (default 8)")
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="default adam (measured: docs/measurements/training.md)")
    train.add_argument("--lr", type=non_negative, help="learning rate (default: adam 0.001, a tenth of it for the run's last tenth; sgd the cfg's rate and policy)")
    train.add_argument("--momentum", type=non_negative, help="SGD momentum (default: the cfg's)")
    train.add_argument("--decay", type=non_negative, help="weight decay (default: the cfg's)")
    train.add_argument("--augment", choices=["default", "none"], default="default",
                       help="default: jitter crop, flip, HSV, corruptions; none: only the resize")
    train.add_argument("--mixup", type=non_negative, default=0.0, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA) (default off)")
    train.add_argument("--freeze", type=int, default=0, metavar="N", help="keep the first N cfg layers fixed")
    train.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N or auto (default: cpu)")
    train.add_argument("--seed", type=int, default=0, help="random initialisation, sampling and augmentation seed")
    train.add_argument("--json", action="store_true", help="JSON lines instead of a progress bar")
    train.set_defaults(handler=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    from .model.weights_store import PRETRAINED
    levels = ["debug", "info", "warning", "error"]
    # Accepted before and after the subcommand; SUPPRESS keeps a subcommand from resetting a value
    # given before it to its own default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=levels, default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="robot-detector", description="Tiny-YOLO v1 person detector for robots.")
    parser.add_argument("--log-level", choices=levels)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="the daemon: camera -> detector -> ZeroMQ + debug stream")
    add_run_arguments(run)

    view = commands.add_parser("view", parents=[common], help="print the daemon's messages, one a line")
    view.add_argument("--connect", default="tcp://127.0.0.1:5556", help="endpoint (default tcp://127.0.0.1:5556)")
    view.add_argument("--topic", action="append", choices=["person", "detections", "status"],
                      help="topic to print (repeatable; default all)")
    view.add_argument("--count", type=positive_int, help="exit after N messages")
    view.add_argument("--timeout", type=float, help="exit after this many seconds without a message")
    view.set_defaults(handler=cmd_view)

    detect = commands.add_parser("detect", parents=[common], help="detect objects in still images")
    detect.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_arguments(detect)
    detect.add_argument("--json", action="store_true", help="one JSON object per image")
    detect.add_argument("--save-raw", metavar="FILE.npy", help="save the raw network outputs (float32)")
    detect.add_argument("--annotate", metavar="OUT.png", help="save the image with boxes drawn")
    detect.set_defaults(handler=cmd_detect)

    evaluate = commands.add_parser("evaluate", parents=[common],
                                   help="VOC average precision per class and mAP of a model on a labelled dataset")
    evaluate.add_argument("dataset", metavar="DATASET",
                          help="dataset folder (images/, labels/, classes.txt), image list file, or VOC root[:split]")
    add_model_arguments(evaluate, defaults=False)
    evaluate.add_argument("--iou", type=fraction, default=0.5, help="IoU a detection needs to match a truth (default 0.5)")
    evaluate.add_argument("--json", action="store_true", help='one JSON object: {"map", "ap", "images", "iou"}')
    evaluate.set_defaults(handler=cmd_evaluate)

    train = commands.add_parser("train", parents=[common], help="train or fine-tune the detector (Darknet's YOLO v1 objective)")
    add_train_arguments(train)

    bench = commands.add_parser("bench", parents=[common], help="measure per-stage latency of the engines")
    add_model_arguments(bench, defaults=False)
    bench.set_defaults(engine="all")
    bench.add_argument("--model", default="yolo-tiny",
                       help="shipped cfg to benchmark with generated weights when --weights is not given")
    bench.add_argument("--frames", type=positive_int, default=50)
    bench.add_argument("--json", action="store_true", help="one JSON object per engine")
    bench.add_argument("--pipeline", action="store_true",
                       help="time the whole daemon (capture -> publish over ZeroMQ) instead of the model stages")
    bench.add_argument("--source", default="synthetic", help="video source for --pipeline (default: synthetic)")
    bench.set_defaults(handler=cmd_bench)

    collect = commands.add_parser("collect", parents=[common],
                                  help="save camera frames as a dataset, labels pre-filled by the current model")
    collect.add_argument("--source", default="0", help="camera index (0), video file, URL, or 'synthetic' (default 0)")
    collect.add_argument("--out", default="dataset", help="dataset folder to add to (default ./dataset)")
    collect.add_argument("--every", type=seconds, default=1.0, metavar="SECONDS",
                         help="at most one frame per this many seconds (default 1)")
    collect.add_argument("--max", type=positive_int, metavar="N", help="stop after N frames (default: Ctrl-C stops)")
    collect.add_argument("--select", choices=["all", "uncertain", "lost"], default="all",
                         help="which frames: all; uncertain (best --target-class score within --band); lost (the "
                              "frames --around a moment the tracker lost its target) (default all)")
    collect.add_argument("--band", type=band, default=(0.1, 0.4), metavar="LOW,HIGH",
                         help="--select uncertain: best target score in (LOW, HIGH] (default 0.1,0.4)")
    collect.add_argument("--around", type=positive_number, default=2.0, metavar="SECONDS",
                         help="--select lost: seconds saved before and after each loss (default 2)")
    collect.add_argument("--min-change", type=fraction, default=0.01, metavar="FRACTION",
                         help="skip frames whose mean grey level differs from the last saved frame's by less "
                              "(near-duplicates; default 0.01; 0 keeps all)")
    collect.add_argument("--target-class", default="person", metavar="NAME", help="class --select looks at (default person)")
    add_model_arguments(collect)
    collect.set_defaults(handler=cmd_collect)

    label = commands.add_parser("label", parents=[common], help="review and correct a dataset's labels in the browser")
    label.add_argument("dataset", metavar="DATASET", help="dataset folder (images/, labels/, classes.txt), e.g. from collect")
    label.add_argument("--http", default="127.0.0.1:8090", metavar="HOST:PORT", help="page address (default 127.0.0.1:8090)")
    label.add_argument("--http-token", metavar="TOKEN", help=f"access token (prefer ${HTTP_TOKEN_ENV} or http_token in --config)")
    label.add_argument("--http-insecure", action="store_true", help="allow a non-loopback --http address without a token")
    label.add_argument("--config", metavar="FILE", help="TOML file whose http_token is used (as for run)")
    label.add_argument("--low-confidence", type=fraction, default=0.5, metavar="P",
                       help="pre-filled boxes scored below P at collection are drawn dashed (default 0.5)")
    label.set_defaults(handler=cmd_label)

    sim = commands.add_parser("simulate-follow", parents=[common],
                              help="the robot client's controller following a simulated walking person")
    add_simulate_follow_arguments(sim)

    weights = commands.add_parser("weights", parents=[common], help="check or download model weights")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    verify = weights_commands.add_parser("verify", parents=[common], help="say what a weights file is and whether it loads")
    verify.add_argument("path")
    verify.add_argument("--cfg")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_weights_verify)
    fetch = weights_commands.add_parser("fetch", parents=[common], help="download the public pretrained weights")
    fetch.add_argument("--dest", metavar="DIR", help="where to save (default: the first writable folder of the "
                       "weights search path, see --weights)")
    fetch.add_argument("--model", default="yolov1-tiny", choices=[p.cfg for p in PRETRAINED] + ["all"])
    fetch.add_argument("--mirror", metavar="URL", help="base URL of a mirror holding the same file names")
    fetch.set_defaults(handler=cmd_weights_fetch)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=(args.log_level or "info").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader went away (`robot-detector view | head -1`): a normal end, not an error. Point
        # stdout at /dev/null so that the interpreter's last flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_SIGPIPE
    except UserError as error:
        print(f"robot-detector: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug, not bad input: say so briefly; the traceback is in the debug log
        log.debug("unexpected error", exc_info=True)
        print(f"robot-detector: internal error: {type(error).__name__}: {error} "
              "(run with --log-level debug for details, and please report it)", file=sys.stderr)
        return EX_FAILURE
