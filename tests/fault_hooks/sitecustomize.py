"""Test-only faults planted in a real daemon process: a test puts this folder first on PYTHONPATH
and names the fault in ROBOT_DETECTOR_TEST_FAULT. Never installed, never imported by the product."""
import os

FAULT = os.environ.get("ROBOT_DETECTOR_TEST_FAULT", "")

if FAULT.startswith("capture-crash:"):
    # The synthetic camera's driver fails for good after N frames, inside the capture thread.
    from detector import capture

    _after = int(FAULT.split(":")[1])
    _read = capture.SyntheticSource.read

    def _failing_read(self):
        if self.count >= _after:
            raise OSError("injected fault: the camera driver failed")
        return _read(self)

    capture.SyntheticSource.read = _failing_read

elif FAULT.startswith("capture-hang:"):
    # The synthetic camera's read blocks for good after N frames (a hung driver); the daemon's
    # hang limit is shortened so that the test need not wait the production 20 s.
    import time

    from detector import capture
    from detector.daemon import service

    _after = int(FAULT.split(":")[1])
    _read = capture.SyntheticSource.read
    service.CAPTURE_HUNG_S = 1.0

    def _hanging_read(self):
        if self.count >= _after:
            time.sleep(3600)
        return _read(self)

    capture.SyntheticSource.read = _hanging_read
