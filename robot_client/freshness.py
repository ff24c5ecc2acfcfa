"""Whether a `person` message is current, judged from the daemon's seq and t_publish.

Arrival time alone cannot tell a fresh message from one that waited in TCP/SSH buffers through a
Wi-Fi stall: the backlog arrives in one burst, every message "just now". Each clock is compared
only with itself: offset = t_arrival (brick, monotonic) - t_publish (PC) is the clocks' difference
plus the transit time, so its smallest value is the fastest transit seen, and a message whose
offset is larger than that by more than `max_lag_s` spent that long in some buffer: it is stale.

The baseline belongs to one daemon run: the client calls `reset` when a new one starts (a new
run_id); seq going back says the same for daemons without run_ids.
"""

# The smallest offset may rise this fast (seconds per second). The PC's clock may be slewed back
# by NTP at up to 500 ppm (ntpd) or 83333 ppm (chrony's default maxslewrate, 1/12), and the
# crystals drift apart by well under 100 ppm: at 0.1 s/s the baseline keeps up with all of them,
# so a healthy link is never refused. A backlog after a stall of S seconds still arrives about
# 0.9 S late; a delay that grows steadily by more than 0.1 s each second is refused as it builds.
MAX_RISE_PER_S = 0.1


class Freshness(object):
    def __init__(self, max_lag_s):
        self.max_lag_s = max_lag_s
        self.reset()

    def reset(self):
        """Forget the link's delay: a new daemon run (its clock may differ from the last one's)."""
        self.baseline_s = None     # smallest t_arrival - t_publish, allowing for slews and drift
        self._baseline_at = None
        self.last_seq = None
        self.last_t_publish = None

    def judge(self, message, t_arrival):
        """None if `message` (a valid person message) is current, else why it is stale."""
        seq, t_publish = message["seq"], message["t_publish"]
        if self.last_seq is not None and seq <= self.last_seq:
            self.reset()  # seq went back: a new daemon run, whatever its clock says
        elif self.last_t_publish is not None and t_publish <= self.last_t_publish:
            self.baseline_s = None  # the PC's clock stepped back: offsets measured before mean nothing now
        self.last_seq, self.last_t_publish = seq, t_publish
        offset = t_arrival - t_publish
        if self.baseline_s is None or offset < self.baseline_s:
            self.baseline_s = offset
        else:
            self.baseline_s = min(offset, self.baseline_s + MAX_RISE_PER_S * (t_arrival - self._baseline_at))
        self._baseline_at = t_arrival
        lag_s = offset - self.baseline_s
        if lag_s > self.max_lag_s:
            return "seq {} arrived {:.0f} ms later than the link's usual delay (a backlog)".format(seq, lag_s * 1000)
        return None
