"""Whether a `person` message is current, judged from the daemon's seq and t_publish.

Arrival time alone cannot tell a fresh message from one that waited in TCP/SSH buffers through a
Wi-Fi stall: the backlog arrives in one burst, every message "just now". Each clock is compared
only with itself: offset = t_arrival (brick, monotonic) - t_publish (PC) is the clocks' difference
plus the transit time, so its smallest value is the fastest transit seen, and a message whose
offset is larger than that by more than `max_lag_s` spent that long in some buffer: it is stale.
"""

# The smallest offset may rise this fast (seconds per second): the two crystals drift apart and
# NTP slews the PC's clock (each well under 500 ppm). A latency that rises faster and stays is
# treated as staleness until the baseline catches up.
DRIFT_PER_S = 0.002


# Only messages published before the newest one, for this long: the daemon restarted on a PC clock
# that stepped back (seq and t_publish both went back), so that message is the reference again.
RESYNC_S = 5.0


class Freshness(object):
    def __init__(self, max_lag_s):
        self.max_lag_s = max_lag_s
        self.baseline_s = None     # smallest t_arrival - t_publish, allowing for drift
        self._baseline_at = None
        self.last_seq = None
        self.last_t_publish = None
        self._old_since = None     # when the current run of older-than-the-newest messages began

    def judge(self, message, t_arrival):
        """None if `message` (a valid person message) is current, else why it is stale."""
        seq, t_publish = message["seq"], message["t_publish"]
        if self.last_t_publish is not None and t_publish <= self.last_t_publish:
            if self._old_since is None:
                self._old_since = t_arrival
            if seq > self.last_seq or t_arrival - self._old_since >= RESYNC_S:
                self.baseline_s = None  # the PC's clock stepped back: offsets measured before mean nothing now
            else:
                return "seq {} was published before seq {}: an old message".format(seq, self.last_seq)
        self._old_since = None
        self.last_seq, self.last_t_publish = seq, t_publish
        offset = t_arrival - t_publish
        if self.baseline_s is None or offset < self.baseline_s:
            self.baseline_s = offset
        else:
            self.baseline_s = min(offset, self.baseline_s + DRIFT_PER_S * (t_arrival - self._baseline_at))
        self._baseline_at = t_arrival
        lag_s = offset - self.baseline_s
        if lag_s > self.max_lag_s:
            return "seq {} arrived {:.0f} ms later than the link's usual delay (a backlog)".format(seq, lag_s * 1000)
        return None
