"""The two drive motors, through ev3dev2's MoveTank, or printed in --dry-run mode.

Every drive command is ev3dev's `run-timed` with a short `time_sp`, renewed while the client wants
the wheels to turn: ev3dev's tacho-motor class arms a kernel timer on each run command and stops
the motor (with its stop_action) when it expires, so a client that dies, is killed or hangs leaves
wheels that stop by themselves within COMMAND_S. Never `run-forever`.
"""
import math
import sys

COMMAND_S = 0.3   # time_sp of each drive command: the longest the wheels turn without the client
RENEW_S = 0.1     # renew well before it runs out: two late loops on the brick do not stutter


class MotorError(Exception):
    """The motors cannot be used (not connected, no ev3dev2, unreadable device tree)."""


class TankMotors(object):
    """Large motors on `left_port` and `right_port` (e.g. outB, outC), driven with ev3dev2."""

    def __init__(self, left_port, right_port, sysfs_root=None):
        try:
            import ev3dev2
            from ev3dev2.motor import MoveTank, SpeedPercent
        except ImportError:
            raise MotorError("the python-ev3dev2 library is not installed (on ev3dev: "
                             "sudo apt-get install python3-ev3dev2); use --dry-run to test without motors")
        if sysfs_root:
            ev3dev2.Device.DEVICE_ROOT_PATH = sysfs_root
        self._speed = SpeedPercent
        self._running = None  # (left, right, duration_s) of the timed run last started
        try:
            self.tank = MoveTank(left_port, right_port)
        except (ev3dev2.DeviceNotFound, OSError) as error:
            raise MotorError("no large motor on {} and {} under {}: {} (check the cables and the "
                             "--left/--right ports)".format(left_port, right_port,
                                                            ev3dev2.Device.DEVICE_ROOT_PATH, error))

    def drive(self, left, right, duration_s):
        if (left, right, duration_s) == self._running:
            # a renewal: the kernel keeps speed_sp, time_sp and stop_action; the command alone re-arms the timer
            self.tank.left_motor.run_timed()
            self.tank.right_motor.run_timed()
            return
        self.tank.on_for_seconds(self._speed(left), self._speed(right), duration_s, brake=True, block=False)
        self._running = (left, right, duration_s)

    def stop(self):
        self._running = None
        self.tank.off(brake=True)


class DryRunMotors(object):
    """Prints wheel commands instead of driving (a renewal of the same speeds prints nothing)."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self._printed = None

    def drive(self, left, right, duration_s):
        if (left, right) != self._printed:
            self.out.write("drive left={:+.1f}% right={:+.1f}%\n".format(left, right))
            self.out.flush()
            self._printed = (left, right)

    def stop(self):
        self.out.write("stop\n")
        self.out.flush()
        self._printed = None


class Wheels(object):
    """Sends a command when it changes, and renews a drive every RENEW_S so that its timed run
    does not expire; nothing more: sysfs writes cost time on the brick's 300 MHz CPU."""

    def __init__(self, motors, log):
        self.motors = motors
        self.log = log
        self.current = None  # None: unknown, so the first stop is always sent
        self._sent_at = None

    def drive(self, speeds, now):
        if not all(math.isfinite(speed) for speed in speeds):
            self.stop("refused non-finite wheel speeds {!r}".format(speeds))
            return
        if speeds != self.current or now - self._sent_at >= RENEW_S:
            self.motors.drive(speeds[0], speeds[1], COMMAND_S)
            self.current = speeds
            self._sent_at = now

    def stop(self, reason):
        if self.current != "stopped":
            self.motors.stop()
            if self.current is not None:
                self.log.info("motors stopped: %s", reason)
            self.current = "stopped"
