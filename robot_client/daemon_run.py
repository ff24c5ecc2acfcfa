"""Which run of the daemon the messages come from, and whether its status lets the robot drive.

A daemon that restarts (or is replaced, say by `robot-detector run --demo` on the same port) is a
new run: nothing remembered from the old one (its status, its `demo` flag, the link's delay) may
decide about the new one. Newer daemons put a random `run_id` on every message; for older ones a
new run shows as seq going back, a status after `stopping`, or a silence longer than the timeout.
Until a status of the current run has arrived, the run is unknown and the robot does not drive.
Person and status messages travel on two sockets, so they may arrive in either order.
"""
import collections

SAME, NEW, IGNORE = "same", "new", "ignore"  # what a message means for the current run (NEW: forget the old)
FINISHED_KEPT = 8  # run_ids remembered as over (said `stopping`, or were replaced)


class DaemonRun(object):
    def __init__(self, timeout_s, allow_recorded=False, log=None):
        """timeout_s: a silence this long from a daemon without run_id may hide a restart.
        allow_recorded: drive on a source that is not live (a file, 'synthetic', --demo)."""
        self.timeout_s = timeout_s
        self.allow_recorded = allow_recorded
        self.log = log
        self.run_id = None       # the current run's id; None: not known or a daemon without run_ids
        self.status = None       # the current run's latest status; None: none received yet
        self.stopped = False     # the current run said `stopping`
        self.last_seq = None     # seq of the current run's latest person message
        self.t_last = None       # brick time of the current run's latest message
        self.runs = 0            # runs seen so far
        self.finished = collections.deque(maxlen=FINISHED_KEPT)

    def _new_run(self, run_id, why):
        if self.run_id is not None and self.run_id not in self.finished:
            self.finished.append(self.run_id)  # its late messages are ignored from now on
        self.run_id, self.status, self.stopped, self.last_seq = run_id, None, False, None
        self.runs += 1
        if self.runs > 1 and self.log:  # a silence is no news of a restart: not worth a warning
            (self.log.debug if why.startswith("silent") else self.log.warning)(
                "a new daemon run (%s): not driving until its status arrives", why)
        return NEW

    def _silent(self, now):
        return self.run_id is None and self.t_last is not None and now - self.t_last > self.timeout_s

    def _identify(self, run_id, now):
        """NEW, SAME or IGNORE for a message of `run_id` (None: the daemon sends none)."""
        if run_id is not None and run_id in self.finished:
            return IGNORE
        if run_id != self.run_id:
            return self._new_run(run_id, "run_id {}".format(run_id) if run_id else "a daemon without run_id")
        if self.runs == 0:
            return self._new_run(run_id, "first message")
        if self._silent(now):
            # maybe a restart, maybe a stall: wait for a status, but keep what tells a backlog
            # (a restart shows in seq going back)
            self._new_run(run_id, "silent for {:.1f} s".format(now - self.t_last))
        return SAME

    def on_person(self, message, now):
        """NEW, SAME, or IGNORE (a message of a run that is over: do not follow it)."""
        verdict = self._identify(message.get("run_id"), now)
        if verdict == SAME and message.get("run_id") is None and self.last_seq is not None \
                and message["seq"] <= self.last_seq:
            verdict = self._new_run(None, "seq went back from {} to {}".format(self.last_seq, message["seq"]))
        if verdict == SAME and self.stopped:
            return IGNORE  # published before `stopping`, delivered after it
        if verdict != IGNORE:
            self.last_seq, self.t_last = message["seq"], now
        return verdict

    def on_status(self, message, now):
        """NEW, SAME or IGNORE, as on_person; the status becomes the current run's."""
        run_id = message.get("run_id")
        verdict = self._identify(run_id, now)
        if verdict == SAME and run_id is None and self.stopped and message["state"] != "stopping":
            verdict = self._new_run(None, "a status after stopping")
        if verdict == IGNORE:
            return verdict
        if self.log and (self.status is None or self.status.get("live") != message.get("live")
                         or self.status["demo"] != message["demo"]):
            why = self.not_live(message)
            if why and not self.allow_recorded:
                self.log.warning("%s: not driving; start the client with --allow-recorded to follow it", why)
        self.status, self.t_last = message, now
        if message["state"] == "stopping":
            self.stopped = True
            if run_id is not None and run_id not in self.finished:
                self.finished.append(run_id)
        return verdict

    @staticmethod
    def not_live(status):
        """Why `status` says the daemon's person is not a live one, or None. A status without
        `live` (an older daemon) counts as live unless it says `demo`."""
        if status["demo"]:
            return "the daemon runs --demo (its person is planted)"
        if not status.get("live", True):
            return "the daemon's source is a recording (a video file or 'synthetic'), not a live camera"
        return None

    def hold(self, now):
        """Why the current run forbids driving, or None."""
        if self.status is None or self._silent(now):
            return "waiting for the daemon's status" if self.runs <= 1 else "waiting for the new daemon run's status"
        if self.stopped:
            return "daemon is stopping"
        why = self.not_live(self.status)
        if why and not self.allow_recorded:
            return why
        return None
