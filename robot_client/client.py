"""`robot-client`: follow the person the daemon reports, and stop whenever in doubt.

Runs resident on the EV3 brick (Python 3.5, Debian's pyzmq). The motors are stopped when no
fresh message arrived within --timeout-ms, when the person is lost, when the daemon says it is
stopping or lost its camera, on SIGTERM/SIGINT, and on any error (in `finally`).
"""
import argparse
import logging
import signal
import sys
import time

import zmq

from . import protocol
from .calibrate import WAIT_S, calibrate
from .controller import Camera, Follower, Gains
from .motors import DryRunMotors, MotorError, TankMotors, Wheels
from .tunnel import SshTunnel

log = logging.getLogger("robot_client")

LOOP_S = 0.02        # decisions are re-taken at least this often, messages or not
REPORT_EVERY_S = 10.0


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


class Counters(object):
    def __init__(self):
        self.messages = 0
        self.malformed = 0
        self.last_error = None


def handle(frame, follower, counters, now):
    """Feed one raw message to the follower; malformed ones are counted and ignored."""
    try:
        topic, payload = protocol.decode(frame)
    except protocol.ProtocolError as error:
        counters.malformed += 1
        counters.last_error = str(error)
        if counters.malformed == 1 or counters.malformed % 100 == 0:
            log.warning("ignored malformed message #%d: %s", counters.malformed, error)
        return
    counters.messages += 1
    if topic == protocol.PERSON:
        follower.on_person(payload, now)
    elif topic == protocol.STATUS:
        follower.on_status(payload, now)


def run(endpoint, wheels, follower, tunnel=None, max_seconds=None):
    context = zmq.Context.instance()
    sockets = [subscriber(context, endpoint, protocol.PERSON), subscriber(context, endpoint, protocol.STATUS)]
    poller = zmq.Poller()
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    counters = Counters()
    started = last_report = time.monotonic()
    try:
        while max_seconds is None or time.monotonic() - started < max_seconds:
            ready = dict(poller.poll(LOOP_S * 1000))
            now = time.monotonic()
            for sock in sockets:
                if ready.get(sock):
                    handle(sock.recv(zmq.NOBLOCK), follower, counters, now)
            if tunnel is not None:
                tunnel.check(now)
            speeds, reason = follower.decide(now)
            if speeds is None:
                wheels.stop(reason)
            else:
                wheels.drive(speeds)
            if now - last_report >= REPORT_EVERY_S:
                last_report = now
                log.info("messages %d, malformed %d, tunnel restarts %s, wheels %s", counters.messages,
                         counters.malformed, tunnel.restarts if tunnel else "-", wheels.current)
    finally:
        for sock in sockets:
            sock.close()
    return counters


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="robot-client", description="Follow the person robot-detector reports.")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5556",
                        help="daemon endpoint, normally the local end of an SSH tunnel (default %(default)s)")
    parser.add_argument("--ssh", metavar="USER@HOST", help="open (and supervise) the SSH tunnel to the daemon's PC")
    parser.add_argument("--ssh-port", type=int, help="sshd port on that PC")
    parser.add_argument("--ssh-key", help="private key for --ssh")
    parser.add_argument("--ssh-option", action="append", default=[], metavar="OPTION",
                        help="extra ssh -o option (repeatable)")
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
    parser.add_argument("--lost-grace-ms", type=int, default=300, help="stop when the person is lost this long")
    parser.add_argument("--dry-run", action="store_true", help="print wheel commands, drive nothing")
    parser.add_argument("--sysfs-root", help="where ev3dev2 looks for devices (default /sys/class)")
    parser.add_argument("--run-seconds", type=float,
                        help="exit after this many seconds (tests, demos); with --calibrate: wait at most this long")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def build_follower(args):
    """The Follower the options describe; ValueError says which option is wrong."""
    if args.timeout_ms <= 0 or args.lost_grace_ms < 0:
        raise ValueError("--timeout-ms must be > 0 and --lost-grace-ms >= 0")
    camera = Camera(args.camera_height, args.hfov, args.vfov)
    gains = Gains(args.max_speed, args.distance, args.target_area, camera, turn_gain=args.turn_gain,
                  drive_gain=args.drive_gain)
    return Follower(gains, args.timeout_ms / 1000.0, args.lost_grace_ms / 1000.0)


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
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
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
    wheels = Wheels(motors, log)
    tunnel = None
    endpoint = args.connect
    try:
        wheels.stop("starting")
        if args.ssh:
            tunnel = SshTunnel(args.ssh, args.remote_port, args.ssh_port, args.ssh_key, args.ssh_option)
            tunnel.start()
            if not tunnel.wait_ready():
                log.warning("ssh tunnel to %s is not up yet; will keep retrying", args.ssh)
            endpoint = tunnel.endpoint
        log.info("following the person published at %s (%s)", endpoint, "dry run" if args.dry_run else
                 "motors {} and {}".format(args.left, args.right))
        counters = run(endpoint, wheels, follower, tunnel, args.run_seconds)
        log.info("done: %d messages, %d malformed", counters.messages, counters.malformed)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            motors.stop()  # whatever happened above, the robot does not keep driving
        finally:
            if tunnel is not None:
                tunnel.close()
