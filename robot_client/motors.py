"""The two drive motors, through ev3dev2's MoveTank, or printed in --dry-run mode."""
import sys


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
        try:
            self.tank = MoveTank(left_port, right_port)
        except (ev3dev2.DeviceNotFound, OSError) as error:
            raise MotorError("no large motor on {} and {} under {}: {} (check the cables and the "
                             "--left/--right ports)".format(left_port, right_port,
                                                            ev3dev2.Device.DEVICE_ROOT_PATH, error))

    def drive(self, left, right):
        self.tank.on(self._speed(left), self._speed(right))

    def stop(self):
        self.tank.off(brake=True)


class DryRunMotors(object):
    """Prints wheel commands instead of driving."""

    def __init__(self, out=None):
        self.out = out or sys.stdout

    def drive(self, left, right):
        self.out.write("drive left={:+.1f}% right={:+.1f}%\n".format(left, right))
        self.out.flush()

    def stop(self):
        self.out.write("stop\n")
        self.out.flush()


class Wheels(object):
    """Sends a command only when it changes: sysfs writes cost time on the brick's 300 MHz CPU."""

    def __init__(self, motors, log):
        self.motors = motors
        self.log = log
        self.current = None  # None: unknown, so the first stop is always sent

    def drive(self, speeds):
        if speeds != self.current:
            self.motors.drive(*speeds)
            self.current = speeds

    def stop(self, reason):
        if self.current != "stopped":
            self.motors.stop()
            if self.current is not None:
                self.log.info("motors stopped: %s", reason)
            self.current = "stopped"
