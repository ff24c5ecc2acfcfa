"""`robot-client`: follow the person the daemon reports, and stop whenever in doubt.

Runs resident on the EV3 brick (Python 3.5, Debian's pyzmq). The motors are stopped when no
fresh message arrived within --timeout-ms, when the person is lost, when the daemon says it is
stopping or lost its camera, while it runs --demo (unless --allow-demo), on SIGTERM/SIGINT/SIGHUP,
and on any error (in `finally`). Every drive command is a timed run that ev3dev ends by itself
unless renewed (motors.py), so a killed or hung client stops the wheels too.
"""
import argparse
import logging
import math
import os
import signal
import sys
import time

import zmq

from . import protocol
from .calibrate import WAIT_S, calibrate
from .controller import Camera, Follower, Gains
from .freshness import Freshness
from .motors import DryRunMotors, MotorError, TankMotors, Wheels
from .sdnotify import Notifier
from .tunnel import HEALTHY_S, SshTunnel

log = logging.getLogger("robot_client")

LOOP_S = 0.02        # decisions are re-taken at least this often, messages or not
REPORT_EVERY_S = 10.0
EX_SIGPIPE = 141     # what a shell reports for a process ended by SIGPIPE


def subscriber(context, endpoint, topic):
    """A SUB socket for one topic that keeps only the newest message (CONFLATE)."""
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.CONFLATE, 1)  # before connect; works because every message is one frame
    sock.setsockopt(zmq.LINGER, 0)
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
    """Raw frames -> the follower. Malformed and stale messages are counted and ignored; the
    daemon's demo flag is remembered from its latest status."""

    def __init__(self, follower, freshness, allow_demo=False):
        self.follower = follower
        self.freshness = freshness
        self.allow_demo = allow_demo
        self.messages = 0
        self.malformed = 0
        self.stale = 0
        self.demo = None  # None: no status seen yet

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
            why = self.freshness.judge(payload, now)
            if why:
                self.stale += 1
                if self.stale == 1 or self.stale % 100 == 0:
                    log.warning("ignored stale message #%d: %s", self.stale, why)
                return
            self.follower.on_person(payload, now)
        elif topic == protocol.STATUS:
            if payload["demo"] and not self.demo and not self.allow_demo:
                log.warning("the daemon runs --demo (its person is planted): not driving; start the client "
                            "with --allow-demo to follow it")
            self.demo = payload["demo"]
            self.follower.on_status(payload, now)

    def hold(self):
        """Why the daemon's status forbids driving, or None."""
        if self.demo is None:
            return "waiting for the daemon's status"
        if self.demo and not self.allow_demo:
            return "the daemon runs --demo"
        return None


def run(endpoint, wheels, follower, freshness, tunnel=None, max_seconds=None, allow_demo=False, notifier=None):
    context = zmq.Context.instance()
    sockets = [subscriber(context, endpoint, protocol.PERSON), subscriber(context, endpoint, protocol.STATUS)]
    poller = zmq.Poller()
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    inbox = Inbox(follower, freshness, allow_demo)
    started = last_report = time.monotonic()
    if notifier is not None:
        notifier.notify("READY=1")
    try:
        while max_seconds is None or time.monotonic() - started < max_seconds:
            ready = dict(poller.poll(LOOP_S * 1000))
            now = time.monotonic()
            for sock in sockets:
                if ready.get(sock):
                    inbox.handle(sock.recv(zmq.NOBLOCK), now)
            if tunnel is not None:
                tunnel.check(now)
            speeds, reason = follower.decide(now)
            if speeds is not None:
                reason = inbox.hold()
            if reason is None:
                wheels.drive(speeds, now)
            else:
                wheels.stop(reason)
            if notifier is not None:
                notifier.watchdog(now)
            if now - last_report >= REPORT_EVERY_S:
                last_report = now
                log.info("messages %d, malformed %d, stale %d, tunnel restarts %s, wheels %s", inbox.messages,
                         inbox.malformed, inbox.stale, tunnel.restarts if tunnel else "-", wheels.current)
    finally:
        for sock in sockets:
            sock.close()
    return inbox


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="robot-client", description="Follow the person robot-detector reports.")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5556",
                        help="daemon endpoint, normally the local end of an SSH tunnel (default %(default)s)")
    parser.add_argument("--ssh", metavar="USER@HOST", help="open (and supervise) the SSH tunnel to the daemon's PC")
    parser.add_argument("--ssh-port", type=int, help="sshd port on that PC")
    parser.add_argument("--ssh-key", help="private key for --ssh")
    parser.add_argument("--ssh-option", action="append", default=[], metavar="OPTION",
                        help="extra ssh -o option (repeatable)")
    parser.add_argument("--ssh-healthy-s", type=float, default=HEALTHY_S, metavar="SECONDS",
                        help="after this long up, a tunnel's restart delay is back to its minimum (default %(default)s)")
    parser.add_argument("--remote-port", type=int, default=5556, help="daemon's port on that PC (default %(default)s)")
    parser.add_argument("--left", default="outB", help="left motor port (default %(default)s)")
    parser.add_argument("--right", default="outC", help="right motor port (default %(default)s)")
    parser.add_argument("--max-speed", type=float, default=40.0, help="wheel speed limit, percent (default %(default)s)")
    parser.add_argument("--distance", type=float, default=1.0,
                        help="metres to keep between the camera and the person (default %(default)s)")
    parser.add_argument("--camera-height", type=float, default=0.2,
                        help="camera lens height above the floor, metres (default %(default)s)")
    parser.add_argument("--hfov", type=float, default=60.0,
                        help="camera's horizontal field of view, degrees (default %(default)s)")
    parser.add_argument("--vfov", type=float, default=45.0,
                        help="camera's vertical field of view, degrees (default %(default)s)")
    parser.add_argument("--target-area", type=float,
                        help="older alternative to the camera geometry: the person's box area (fraction of "
                             "the frame) at --distance; less exact when the box is cut off at the top")
    parser.add_argument("--turn-gain", type=float, default=30.0,
                        help="wheel-speed difference (percent) with the person at the frame's edge (default %(default)s)")
    parser.add_argument("--drive-gain", type=float, default=1.5,
                        help="extra forward speed, m/s per metre of distance error (default %(default)s)")
    parser.add_argument("--calibrate", action="store_true",
                        help="read a few person messages, print the options for where the person stands now, exit")
    parser.add_argument("--timeout-ms", type=int, default=500, help="stop when no fresh message for this long")
    parser.add_argument("--dry-run", action="store_true",
                        help="print wheel commands, drive nothing (also while the daemon runs --demo)")
    parser.add_argument("--allow-demo", action="store_true",
                        help="drive on a daemon started with --demo (its person is planted); off by default")
    parser.add_argument("--stop-motors", action="store_true",
                        help="brake both motors and exit (the brick's unit runs this after the client stops)")
    parser.add_argument("--sysfs-root", help="where ev3dev2 looks for devices (default /sys/class)")
    parser.add_argument("--run-seconds", type=float,
                        help="exit after this many seconds (tests, demos); with --calibrate: wait at most this long")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def build_follower(args):
    """The Follower the options describe; ValueError says which option is wrong."""
    if args.timeout_ms <= 0:
        raise ValueError("--timeout-ms must be > 0")
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
    if not (math.isfinite(args.ssh_healthy_s) and args.ssh_healthy_s >= 0):
        sys.stderr.write("robot-client: error: --ssh-healthy-s must be a finite number >= 0, found {}\n".format(
            args.ssh_healthy_s))
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
                    allow_demo=args.allow_demo or args.dry_run, notifier=notifier)
        log.info("done: %d messages, %d malformed, %d stale", inbox.messages, inbox.malformed, inbox.stale)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            motors.stop()  # whatever happened above, the robot does not keep driving
        finally:
            notifier.close()
            if tunnel is not None:
                tunnel.close()
