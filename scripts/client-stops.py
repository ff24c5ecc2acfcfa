"""How fast the robot client acts on a frozen box and on a daemon restart, with the real client
(the brick's Python stand-in, .venv-ev3), the real ev3dev2 on the fake sysfs tree of
tests/ev3_helpers.py, and a scripted publisher on loopback:

- still: a box that never moves while the robot turns towards it: first drive command -> stop;
- restart: a daemon killed, a new run (run_id) 1 s later on a PC clock 2 s behind: its first
  status -> the first drive command.

Run as `.venv/bin/python scripts/client-stops.py [RUNS]` (default 5); prints median and max in ms.
The recorder thread that timestamps the motor files is part of the figures (a few ms, more under load).
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ev3_helpers import FakeMotorTree, publisher, start_client, stop_client, wait_until_following  # noqa: E402
from test_robot_client import run_timed_commands, send_for  # noqa: E402


def one(kind):
    tmp = Path(tempfile.mkdtemp(prefix="client-stops-"))
    tree = FakeMotorTree(tmp / "sys")
    sock, endpoint = publisher()
    client = start_client("--connect", endpoint, "--sysfs-root", tree.root, "--timeout-ms", 300, tmp_path=tmp)
    try:
        wait_until_following(client, tmp / "client.log")
        if kind == "still":
            t0 = time.monotonic()
            send_for(sock, 2.5, offset_x=0.6, still=True)
            first = run_timed_commands(tree, "outB", after=t0)[0]
            return tree.first_time("outB", "command", "stop", after=first) - first
        send_for(sock, 1.0, offset_x=0.6, seq=500, run_id="old")
        time.sleep(1.0)
        t0 = time.monotonic()
        send_for(sock, 2.0, offset_x=0.6, clock_s=-2.0, run_id="new")  # its status comes first
        return run_timed_commands(tree, "outB", after=t0)[0] - t0
    finally:
        stop_client(client)
        tree.close()
        sock.close()


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for kind in ("still", "restart"):
        values = sorted(one(kind) * 1000 for _ in range(runs))
        print("{}: median {:.0f} ms, max {:.0f} ms ({})".format(kind, statistics.median(values), values[-1],
                                                                ", ".join("{:.0f}".format(v) for v in values)))


if __name__ == "__main__":
    main()
