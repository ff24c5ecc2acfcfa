"""`robot-client`: follow the person the daemon reports, and stop whenever in doubt.

Runs resident on the EV3 brick (Python 3.5, Debian's pyzmq). The motors are stopped when no
fresh message arrived within --timeout-ms, when the person is lost, when the daemon says it is
stopping or lost its camera, while a new daemon run has not sent its status yet, while the
daemon's source is not live (a recording or --demo; unless --allow-recorded), when the person's box
stays exactly still while driving, on SIGTERM/SIGINT/SIGHUP, and on any error (in `finally`). Every drive command is a timed run that ev3dev ends by itself
unless renewed (motors.py), so a killed or hung client stops the wheels too.
"""
import argparse
import logging
import math
import os
import re
import signal
import sys
import time

import zmq

from . import protocol
from .calibrate import WAIT_S, calibrate
from .controller import Camera, Follower, Gains
from .daemon_run import IGNORE, NEW, DaemonRun
from .freshness import Freshness
from .motors import DryRunMotors, MotorError, TankMotors, Wheels
from .sdnotify import Notifier
from .target import BEEP_PROGRAM, Beeper, TargetWatch
from .tunnel import HEALTHY_S, SshTunnel

log = logging.getLogger("robot_client")

LOOP_S = 0.02        # decisions are re-taken at least this often, messages or not
REPORT_EVERY_S = 10.0
EX_SIGPIPE = 141     # what a shell reports for a process ended by SIGPIPE
# --timeout-ms: below a frame period at 20 fps the robot stutters; above 1 s a silent link would
# keep the wheels turning (renewed by the client) for longer than the daemon's own grace allows
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 50, 1000
MAX_RUN_S = 31536000  # --run-seconds: a year
RESUBSCRIBE_S = 3.0  # a socket that received nothing this long is replaced by a new one


def subscriber(context, endpoint, topic):
    """A SUB socket for one topic that keeps only the newest message (CONFLATE)."""
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.CONFLATE, 1)  # before connect; works because every message is one frame
    sock.setsockopt(zmq.LINGER, 0)
    # A hostile or broken peer's huge message is never buffered: libzmq drops the connection and
    # reconnects, and the client sees a silence (and stops) instead of running out of memory.
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.RECONNECT_IVL, 200)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    # ZMTP heartbeats (libzmq >= 4.2) notice a dead peer behind a half-open TCP connection;
    # older libzmq (Debian stretch's pyzmq may be built on 4.1) does without them.
    for name, value in (("HEARTBEAT_IVL", 1000), ("HEARTBEAT_TIMEOUT", 3000), ("HEARTBEAT_TTL", 3000)):
        option = getattr(zmq, name, None)
        if option is not None:
            try:
                sock.setsockopt(option, value)
            except zmq.ZMQError:
                pass
    sock.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii") + b" ")
    sock.connect(endpoint)
    return sock


class Inbox(object):
    """Raw frames -> the follower. Malformed and stale messages, and those of a daemon run that is
    over, are counted and ignored; which run is current, and what its status allows, is the
    DaemonRun's to say."""

    def __init__(self, follower, freshness, daemon_run, target=None):
        self.follower = follower
        self.freshness = freshness
        self.daemon_run = daemon_run
        self.target = target
        self.messages = 0
        self.malformed = 0
        self.stale = 0
        self.ignored = 0  # of a run that said `stopping` or was replaced

    def handle(self, frame, now):
        try:
            topic, payload = protocol.decode(frame)
        except protocol.ProtocolError as error:
            self.malformed += 1
            if self.malformed == 1 or self.malformed % 100 == 0:
                log.warning("ignored malformed message #%d: %s", self.malformed, error)
            return
        self.messages += 1
        if topic == protocol.PERSON:
            verdict = self.daemon_run.on_person(payload, now)
        elif topic == protocol.STATUS:
            verdict = self.daemon_run.on_status(payload, now)
        else:
            return
        if verdict == IGNORE:
            self.ignored += 1
            if self.ignored == 1 or self.ignored % 100 == 0:
                log.info("ignored %s message #%d of a daemon run that is over", topic, self.ignored)
            return
        if verdict == NEW:
            self.freshness.reset()
            self.follower.reset()
            if self.target is not None:
                self.target.reset()
        if topic == protocol.STATUS:
            self.follower.on_status(payload, now)
            return
        why = self.freshness.judge(payload, now)
        if why:
            self.stale += 1
            if self.stale == 1 or self.stale % 100 == 0:
                log.warning("ignored stale message #%d: %s", self.stale, why)
            return
        if self.target is not None:
            self.target.on_person(payload)
        self.follower.on_person(payload, now)

    def hold(self, now):
        """Why the daemon's run or status forbids driving, or None."""
        return self.daemon_run.hold(now)


def run(endpoint, wheels, follower, freshness, tunnel=None, max_seconds=None, allow_recorded=False, notifier=None,
        target=None):
    context = zmq.Context.instance()
    topics = (protocol.PERSON, protocol.STATUS)
    sockets = dict((topic, subscriber(context, endpoint, topic)) for topic in topics)
    poller = zmq.Poller()
    for sock in sockets.values():
        poller.register(sock, zmq.POLLIN)
    inbox = Inbox(follower, freshness, DaemonRun(follower.timeout_s, allow_recorded, log), target)
    started = last_report = time.monotonic()
    heard = dict.fromkeys(topics, started)  # when each socket last received a message
    if notifier is not None:
        notifier.notify("READY=1")
    try:
        while max_seconds is None or time.monotonic() - started < max_seconds:
            ready = dict(poller.poll(LOOP_S * 1000))
            now = time.monotonic()
            for topic in topics:
                sock = sockets[topic]
                if ready.get(sock):
                    inbox.handle(sock.recv(zmq.NOBLOCK), now)
                    heard[topic] = now
                elif now - heard[topic] > RESUBSCRIBE_S:
                    # libzmq does not reconnect a connection it dropped for a protocol error (a
                    # message over MAXMSGSIZE): a new socket does; on a daemon that is down, no harm
                    log.debug("no %s message for %.1f s: subscribing anew", topic, now - heard[topic])
                    poller.unregister(sock)
                    sock.close()
                    sockets[topic] = subscriber(context, endpoint, topic)
                    poller.register(sockets[topic], zmq.POLLIN)
                    heard[topic] = now
            if tunnel is not None:
                tunnel.check(now)
            speeds, reason = follower.decide(now, inbox.hold(now))
            if reason is None:
                wheels.drive(speeds, now)
            else:
                wheels.stop(reason)
            if notifier is not None:
                notifier.watchdog(now)
            if now - last_report >= REPORT_EVERY_S:
                last_report = now
                log.info("messages %d, malformed %d, stale %d, ignored %d, tunnel restarts %s, wheels %s",
                         inbox.messages, inbox.malformed, inbox.stale, inbox.ignored,
                         tunnel.restarts if tunnel else "-", wheels.current)
    finally:
        for sock in sockets.values():
            sock.close()
    return inbox


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        """One line, exit 2: what was wrong and where to look (argparse prints the usage first)."""
        self.exit(2, "{}: error: {} (see {} --help)\n".format(self.prog, message, self.prog))


def number_in(low, high, low_open=False, high_open=False, kind=float, unit="", hint=""):
    """An argparse type: a finite number of `kind` in the range; the range says itself in errors."""
    described = "{}{}, {}{}{}".format("(" if low_open else "[", low, high, ")" if high_open else "]",
                                      " " + unit if unit else "")

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low or value > high \
                or (low_open and value == low) or (high_open and value == high):
            raise argparse.ArgumentTypeError("expected {} in {}, found {!r}{}".format(
                "an integer" if kind is int else "a number", described, text, hint))
        return value
    convert.range = described  # for the documentation test
    return convert


def matching(pattern, expected):
    """An argparse type: a string that matches `pattern` entirely."""
    def convert(text):
        if not re.match("(?:" + pattern + r")\Z", text):
            raise argparse.ArgumentTypeError("expected {}, found {!r}".format(expected, text))
        return text
    convert.range = expected
    return convert


PORT = number_in(1, 65535, kind=int)
MOTOR_PORT = matching("out[A-D]", "a motor port outA, outB, outC or outD")
ENDPOINT_SHAPE = matching(r"tcp://(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d{1,5}|ipc://\S+", "tcp://HOST:PORT or ipc://PATH")


def endpoint(text):
    """An argparse type: a ZeroMQ endpoint whose tcp port, if any, is in 1 to 65535 (as --remote-port's);
    ZeroMQ would take port 99999 without complaint and the client would wait forever."""
    ENDPOINT_SHAPE(text)
    if text.startswith("tcp://") and not 1 <= int(text.rsplit(":", 1)[1]) <= 65535:
        raise argparse.ArgumentTypeError("expected tcp://HOST:PORT with PORT in 1 to 65535, found {!r}".format(text))
    return text


def parse_args(argv):
    parser = ArgumentParser(prog="robot-client", description="Follow the person robot-detector reports.")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5556",
                        type=endpoint,
                        help="daemon endpoint, normally the local end of an SSH tunnel (default %(default)s)")
    parser.add_argument("--ssh", metavar="USER@HOST", type=matching(r"[^\s@-][^\s@]*@[^\s@-]\S*", "USER@HOST"),
                        help="open (and supervise) the SSH tunnel to the daemon's PC")
    parser.add_argument("--ssh-port", type=PORT, help="sshd port on that PC, 1 to 65535")
    parser.add_argument("--ssh-key", help="private key for --ssh")
    parser.add_argument("--ssh-option", action="append", default=[], metavar="OPTION",
                        type=matching(r"[A-Za-z]+[= ]\S.*", "an ssh -o option NAME=VALUE"),
                        help="extra ssh -o option NAME=VALUE (repeatable)")
    parser.add_argument("--ssh-healthy-s", type=number_in(0, 3600, unit="s"), default=HEALTHY_S, metavar="SECONDS",
                        help="after this long up, a tunnel's restart delay is back to its minimum, 0 to 3600 "
                             "(default %(default)s)")
    parser.add_argument("--remote-port", type=PORT, default=5556,
                        help="daemon's port on that PC, 1 to 65535 (default %(default)s)")
    parser.add_argument("--left", default="outB", type=MOTOR_PORT, help="left motor port (default %(default)s)")
    parser.add_argument("--right", default="outC", type=MOTOR_PORT, help="right motor port (default %(default)s)")
    parser.add_argument("--max-speed", type=number_in(0, 100, low_open=True, unit="%"), default=40.0,
                        help="wheel speed limit, percent, (0, 100] (default %(default)s)")
    parser.add_argument("--distance", type=number_in(0.2, 10, unit="m"), default=1.0,
                        help="metres to keep between the camera and the person, 0.2 to 10 (default %(default)s)")
    parser.add_argument("--camera-height", type=number_in(0, 3, low_open=True, high_open=True, unit="m"), default=0.2,
                        help="camera lens height above the floor, metres, (0, 3) (default %(default)s)")
    parser.add_argument("--hfov", type=number_in(1, 170, unit="degrees"), default=60.0,
                        help="camera's horizontal field of view, 1 to 170 degrees (default %(default)s)")
    parser.add_argument("--vfov", type=number_in(1, 170, unit="degrees"), default=45.0,
                        help="camera's vertical field of view, 1 to 170 degrees (default %(default)s)")
    parser.add_argument("--target-area", type=number_in(0, 1, low_open=True, high_open=True),
                        help="older alternative to the camera geometry: the person's box area (fraction of "
                             "the frame, (0, 1)) at --distance; less exact when the box is cut off at the top")
    parser.add_argument("--turn-gain", type=number_in(0, 100, low_open=True, unit="%"), default=30.0,
                        help="wheel-speed difference (percent, (0, 100]) with the person at the frame's edge "
                             "(default %(default)s)")
    parser.add_argument("--drive-gain", type=number_in(0, 5, low_open=True, unit="m/s per m",
                                                      hint=" (it is no longer a percentage)"), default=1.5,
                        help="extra forward speed, m/s per metre of distance error, (0, 5] (default %(default)s)")
    parser.add_argument("--calibrate", action="store_true",
                        help="read a few person messages, print the options for where the person stands now, exit")
    parser.add_argument("--timeout-ms", type=number_in(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, kind=int, unit="ms"),
                        default=500, help="stop when no fresh message for this long, {} to {} (default %(default)s)"
                        .format(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS))
    parser.add_argument("--dry-run", action="store_true",
                        help="print wheel commands, drive nothing (also on a recording or --demo)")
    parser.add_argument("--allow-recorded", "--allow-demo", dest="allow_recorded", action="store_true",
                        help="drive although the daemon's source is not live: a video file, 'synthetic' or "
                             "--demo (its person is planted); off by default")
    parser.add_argument("--beep", action="store_true",
                        help="beep when the target is lost, found again or changed (ev3dev2's Sound)")
    parser.add_argument("--beep-program", default=BEEP_PROGRAM, metavar="PATH",
                        help="the beep(1) that --beep runs (default %(default)s, as ev3dev2's Sound.beep)")
    parser.add_argument("--stop-motors", action="store_true",
                        help="brake both motors and exit (the brick's unit runs this after the client stops)")
    parser.add_argument("--sysfs-root", help="where ev3dev2 looks for devices (default /sys/class)")
    parser.add_argument("--run-seconds", type=number_in(0, MAX_RUN_S, low_open=True, unit="s"),
                        help="exit after this many seconds (tests, demos); with --calibrate: wait at most this long")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if args.left == args.right:
        parser.error("--left and --right are both {}: expected two different motor ports".format(args.left))
    return args


def build_follower(args):
    """The Follower the options describe; ValueError says which option is wrong."""
    camera = Camera(args.camera_height, args.hfov, args.vfov)
    gains = Gains(args.max_speed, args.distance, args.target_area, camera, turn_gain=args.turn_gain,
                  drive_gain=args.drive_gain)
    return Follower(gains, args.timeout_ms / 1000.0)


def run_calibration(args, gains):
    """--calibrate: through the tunnel when --ssh is given; no motors involved."""
    tunnel = None
    endpoint = args.connect
    try:
        if args.ssh:
            tunnel = SshTunnel(args.ssh, args.remote_port, args.ssh_port, args.ssh_key, args.ssh_option)
            tunnel.start()
            tunnel.wait_ready()
            endpoint = tunnel.endpoint
        return calibrate(endpoint, gains, sys.stdout, args.run_seconds or WAIT_S)
    except KeyboardInterrupt:
        return 130
    finally:
        if tunnel is not None:
            tunnel.close()


def _terminate(signum, frame):
    raise SystemExit(0)  # unwinds through `finally`, which stops the motors


def main(argv=None):
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # The reader of --dry-run or --calibrate output went away (`robot-client --dry-run | head`):
        # a normal end, after the `finally` below has stopped the motors. stdout goes to /dev/null
        # so that the interpreter's last flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_SIGPIPE


def _main(argv):
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # SIGHUP: the ssh session that started the client by hand is gone; stop like SIGTERM
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    try:
        follower = build_follower(args)
    except ValueError as error:
        sys.stderr.write("robot-client: error: {}\n".format(error))
        return 2
    if args.calibrate:
        return run_calibration(args, follower.gains)
    try:
        motors = DryRunMotors() if args.dry_run else TankMotors(args.left, args.right, args.sysfs_root)
    except MotorError as error:
        sys.stderr.write("robot-client: error: {}\n".format(error))
        return 2
    if args.stop_motors:
        motors.stop()
        return 0
    wheels = Wheels(motors, log)
    freshness = Freshness(args.timeout_ms / 1000.0)
    target = TargetWatch(log, Beeper(args.beep_program, log) if args.beep else None)
    notifier = Notifier()
    tunnel = None
    endpoint = args.connect
    try:
        wheels.stop("starting")
        if args.ssh:
            tunnel = SshTunnel(args.ssh, args.remote_port, args.ssh_port, args.ssh_key, args.ssh_option,
                               healthy_s=args.ssh_healthy_s)
            tunnel.start()
            if not tunnel.wait_ready():
                log.warning("ssh tunnel to %s is not up yet; will keep retrying", args.ssh)
            endpoint = tunnel.endpoint
        log.info("following the person published at %s (%s)", endpoint, "dry run" if args.dry_run else
                 "motors {} and {}".format(args.left, args.right))
        inbox = run(endpoint, wheels, follower, freshness, tunnel, args.run_seconds,
                    allow_recorded=args.allow_recorded or args.dry_run, notifier=notifier, target=target)
        log.info("done: %d messages, %d malformed, %d stale, %d ignored", inbox.messages, inbox.malformed,
                 inbox.stale, inbox.ignored)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            motors.stop()  # whatever happened above, the robot does not keep driving
        finally:
            notifier.close()
            if target.beeper is not None:
                target.beeper.close()
            if tunnel is not None:
                tunnel.close()
