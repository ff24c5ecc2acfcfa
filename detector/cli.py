"""The `robot-detector` command: argument parsing and error reporting, nothing else.

Every UserError becomes one clear message on stderr and its exit code; no user-facing command
ends in a bare traceback.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys

from .errors import EX_FAILURE, UserError
from .options import DAEMON, LOG_LEVELS, OptionError, options_for

log = logging.getLogger("robot-detector")

HTTP_TOKEN_ENV = "ROBOT_DETECTOR_HTTP_TOKEN"
EX_SIGPIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE
EX_USAGE = 2  # argparse's, for any bad command-line value


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (what was wrong, and where the help is), exit code 2."""

    def error(self, message):
        self.exit(EX_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def option_type(option):
    """The argparse `type` of a table option: converts and checks, or says what was expected."""
    def convert(text: str):
        try:
            return option.from_text(text)
        except OptionError as error:
            raise argparse.ArgumentTypeError(f"expected {error}, found {option.shown(text)}") from None
    convert.__name__ = option.key  # argparse names it in errors it makes itself
    return convert


def help_text(option) -> str:
    """The table's help with the range or choices and the default."""
    rules = []
    if option.kind in ("int", "float", "interval", "choice", "list"):
        rules.append(option.expected())
    if option.default not in (None, False, ()) and "(default" not in option.help:
        rules.append(f"default {option.default_text}")
    text = option.help.replace("%", "%%")
    if not rules:
        return text
    if re.search(r"\(default[^()]*\)$", text):  # one parenthesis: "(default: ...; a number from 0 to 1)"
        return text[:-1] + f"; {'; '.join(rules)})"
    return text + f" ({'; '.join(rules)})"


def add_options(parser: argparse.ArgumentParser, command: str, only=None) -> None:
    """The table's options of `command` (those named in `only`, if given) as arguments. For `run`
    nothing has a default here: an option not given leaves the config file's value or the default."""
    for option in options_for(command):
        if option.cli_flag is None or option.every_command or (only is not None and option.key not in only):
            continue
        daemon = command == DAEMON
        kwargs = {"dest": option.key, "help": help_text(option)}
        if option.kind == "bool":  # a flag turns on what is off by default, off what is on (--no-appearance)
            kwargs.update(action="store_const", const=not option.default, default=None if daemon else option.default)
        else:
            kwargs.update(type=option_type(option), default=None if daemon else option.default)
            if option.kind == "list" and option.default is None:
                kwargs["action"] = "extend"  # repeatable: --topic person --topic status
            kwargs["metavar"] = option.metavar or metavar(option)
        parser.add_argument(option.cli_flag, **kwargs)


def metavar(option) -> str:
    if option.kind == "choice":
        return "|".join(option.choices)
    if option.kind in ("int", "float"):
        return {"seconds": "S"}.get(option.unit, "N" if option.kind == "int" else "X")
    return option.key.upper()


def predictor_spec(args, **changes):
    from .model.builder import PredictorSpec
    return PredictorSpec.of(args, **changes)


def cmd_detect(args) -> int:
    from .detect import run_detect
    from .model.builder import build_predictor
    predictor = build_predictor(predictor_spec(args, require_names=False))
    run_detect(predictor, args.images, args.json, args.save_raw, args.annotate)
    return 0


def cmd_collect(args) -> int:
    from .model.builder import build_predictor
    from .train.collect import Selection, run_collect
    low, high = args.band
    # the uncertain band may reach below the threshold: decode down to its lower edge
    threshold = min(args.threshold, low) if args.select == "uncertain" else args.threshold
    predictor = build_predictor(predictor_spec(args, threshold=threshold))
    names = predictor.names
    if args.target_class not in names:
        raise UserError(f"--target-class must be one of the class names ({', '.join(names)}), "
                        f"found '{args.target_class}'", 2)
    selection = Selection(args.select, names.index(args.target_class), (low, high), args.around, args.min_change)
    run_collect(predictor, names, args.source, args.out, args.every, args.max, selection)
    return 0


def cmd_label(args) -> int:
    from .train.labelserver import run_label_server
    token = args.http_token or os.environ.get(HTTP_TOKEN_ENV) or None
    if token is None and args.config:
        from .daemon.config import read_toml
        token = read_toml(args.config).get("http_token")
    return run_label_server(args.dataset, args.http, token, args.http_insecure, args.low_confidence)


def cmd_evaluate(args) -> int:
    from .train.evaluate import run_evaluate
    run_evaluate(args.dataset, predictor_spec(args), args.iou, args.json)
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
    from dataclasses import replace
    from .bench import BenchRun, run_bench
    from .model.engines import ENGINES, GPU_ENGINES, check_precision
    spec = predictor_spec(args, require_names=False)
    first = BenchRun(spec, args.frames, args.model)
    model = first.load()  # here first: a bad file fails before any engine's process starts
    if args.names:  # checked so that a wrong file fails here as in `run`; names do not change timings
        from .model.classnames import class_names_for
        class_names_for(model.spec, args.names)
    every_engine = "all" in args.engines
    if every_engine:
        engines = list(GPU_ENGINES) if args.device not in ("cpu", "auto") else list(ENGINES)
    else:
        engines = list(args.engines)
    # Every engine at every precision it has; asked for by name, one it lacks is an error.
    runs = [replace(first, spec=replace(spec, engine=engine, precision=precision),
                    pipeline_source=args.source if args.pipeline else None)
            for precision in args.precisions for engine in engines
            if not every_engine or precision in ENGINES[engine].precisions]
    for run in runs:
        check_precision(run.spec.engine, run.spec.precision)
    if not args.json:
        print(f"weights: {model.source}")
    if args.pipeline and not args.log_level:
        logging.getLogger().setLevel(logging.WARNING)  # the table, not the daemon's log
    if len(runs) > 1:
        model = None  # each engine's process loads its own
    run_bench(runs, args.json, model)
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
    from .daemon.config import load_config
    from .daemon.service import run_service
    overrides = {option.key: getattr(args, option.key, None) for option in options_for(DAEMON)}
    # The environment (e.g. a systemd EnvironmentFile readable by root only) keeps the token off
    # command lines that `ps` shows; it overrides the config file, the command line overrides both.
    overrides["http_token"] = args.http_token or os.environ.get(HTTP_TOKEN_ENV) or None
    config = load_config(args.config, overrides)
    if args.no_http:
        config = replace(config, http=None)
    logging.getLogger().setLevel(config.log_level.upper())
    return run_service(config)


def cmd_track(args) -> int:
    from .daemon.config import load_config
    from .daemon.replay import ReplaySummary, replay
    from .daemon.tracker import PersonTracker
    config = load_config(args.config, {option.key: getattr(args, option.key) for option in options_for("track")})
    tracker = PersonTracker(config.track_grace_s, config.relock_s, config.lock, config.smoothing, appearance=False)
    summary = ReplaySummary()
    try:
        lines = (io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace") if args.file == "-"
                 else open(args.file, encoding="utf-8", errors="replace"))
    except OSError as error:
        raise UserError(f"cannot read {args.file}: {error.strerror}; expected a file of `robot-detector view "
                        "--topic detections` lines, or - for standard input") from None
    with lines:
        for line in replay(lines, tracker, config.target_class, summary):
            print(line, flush=args.file == "-")
    if args.summary:
        print("\n".join(summary.lines()), file=sys.stderr)
    return 0


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
    add_options(sim.add_argument_group("the world"), "simulate-follow",
                only=("delay_s", "rate_hz", "noise", "seed", "camera_height_m", "hfov_deg", "vfov_deg",
                      "person_height_m", "person_width_m", "path", "miss", "crosser_speed_m_s", "crosser_at_s",
                      "crosser_gap_m", "walk_speed_m_s", "arc_radius_m", "arc_deg", "straight_s", "stand_s",
                      "start_distance_m", "wheel_radius_m", "track_m", "motor_max_deg_s", "motor_tau_s"))
    robot = sim.add_argument_group("the robot client")
    add_options(robot, "simulate-follow", only=("distance_m", "max_speed"))
    robot.add_argument("--client-option", dest="client_options", action="append", metavar="OPTION",
                       help="a further robot-client option, e.g. --client-option=--turn-gain=20 (repeatable)")
    add_options(sim, "simulate-follow", only=("png",))
    sim.add_argument("--json", action="store_true", help="the figures as one JSON object")
    sim.set_defaults(handler=cmd_simulate_follow)


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Every option is also a key of the TOML config; None means 'not given here'."""
    run.add_argument("--config", metavar="FILE", help="TOML config file (command-line options override it)")
    add_options(run, DAEMON)
    run.add_argument("--no-http", action="store_true", help="no debug stream")
    run.set_defaults(handler=cmd_run)


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("dataset", metavar="DATASET", help="Darknet-layout folder, list file of images, or VOC root[:split]")
    add_options(train, "train")
    train.add_argument("--json", action="store_true", help="JSON lines instead of a progress bar")
    train.set_defaults(handler=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    # Accepted before and after the subcommand; SUPPRESS keeps a subcommand from resetting a value
    # given before it to its own default.
    common = Parser(add_help=False)
    common.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS)
    parser = Parser(prog="robot-detector", description="Tiny-YOLO v1 person detector for robots.")
    parser.add_argument("--log-level", choices=LOG_LEVELS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(subcommands, name: str, handler, help: str, options: str | None = None) -> argparse.ArgumentParser:
        """A subcommand with the common options, the table's options of `options` (default: its name)
        and its handler; the caller adds what is not in the table."""
        sub = subcommands.add_parser(name, parents=[common], help=help)
        add_options(sub, options or name)
        sub.set_defaults(handler=handler)
        return sub

    run = commands.add_parser("run", parents=[common], help="the daemon: camera -> detector -> ZeroMQ + debug stream")
    add_run_arguments(run)

    command(commands, "view", cmd_view, "print the daemon's messages, one a line")

    track = commands.add_parser("track", parents=[common],
                                help="replay recorded `detections` lines through the tracker: one `person` line each")
    track.add_argument("file", nargs="?", default="-", metavar="FILE|-",
                       help="`robot-detector view --topic detections` output (default -: standard input)")
    track.add_argument("--config", metavar="FILE", help="TOML config file of `run` (its tracker keys are used)")
    add_options(track, "track")
    track.set_defaults(**{option.key: None for option in options_for("track")})  # not given: the config file's
    track.add_argument("--summary", action="store_true",
                       help="print to stderr how often the target changed and the share of frames with a target")
    track.set_defaults(handler=cmd_track)

    detect = command(commands, "detect", cmd_detect, "detect objects in still images")
    detect.add_argument("images", nargs="+", metavar="IMAGE")
    detect.add_argument("--json", action="store_true", help="one JSON object per image")
    detect.add_argument("--save-raw", metavar="FILE.npy", help="save the raw network outputs (float32)")

    evaluate = command(commands, "evaluate", cmd_evaluate,
                       "VOC average precision per class and mAP of a model on a labelled dataset")
    evaluate.add_argument("dataset", metavar="DATASET",
                          help="dataset folder (images/, labels/, classes.txt), image list file, or VOC root[:split]")
    evaluate.add_argument("--json", action="store_true",
                          help='one JSON object: {"map", "ap", "images", "iou", "engine", "precision"}')

    train = commands.add_parser("train", parents=[common], help="train or fine-tune the detector (Darknet's YOLO v1 objective)")
    add_train_arguments(train)

    bench = command(commands, "bench", cmd_bench, "measure per-stage latency of the engines")
    bench.add_argument("--json", action="store_true", help="one JSON object per engine")
    bench.add_argument("--pipeline", action="store_true",
                       help="time the whole daemon (capture -> publish over ZeroMQ) instead of the model stages")

    command(commands, "collect", cmd_collect, "save camera frames as a dataset, labels pre-filled by the current model")

    label = command(commands, "label", cmd_label, "review and correct a dataset's labels in the browser")
    label.add_argument("dataset", metavar="DATASET", help="dataset folder (images/, labels/, classes.txt), e.g. from collect")
    label.add_argument("--config", metavar="FILE", help="TOML file whose http_token is used (as for run)")

    sim = commands.add_parser("simulate-follow", parents=[common],
                              help="the robot client's controller following a simulated walking person")
    add_simulate_follow_arguments(sim)

    weights = commands.add_parser("weights", parents=[common], help="check or download model weights")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION",
                                          parser_class=Parser)
    verify = command(weights_commands, "verify", cmd_weights_verify, "say what a weights file is and whether it loads",
                     "weights-verify")
    verify.add_argument("path")
    verify.add_argument("--json", action="store_true")
    command(weights_commands, "fetch", cmd_weights_fetch, "download the public pretrained weights", "weights-fetch")
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
