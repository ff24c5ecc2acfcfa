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


class Freshness(object):
    def __init__(self, max_lag_s):
        self.max_lag_s = max_lag_s
        self.baseline_s = None     # smallest t_arrival - t_publish, allowing for drift
        self._baseline_at = None
        self.last_seq = None
        self.last_t_publish = None

    def judge(self, message, t_arrival):
        """None if `message` (a valid person message) is current, else why it is stale."""
        seq, t_publish = message["seq"], message["t_publish"]
        if self.last_t_publish is not None:
            if seq == self.last_seq and t_publish == self.last_t_publish:
                return "seq {} again: a duplicate".format(seq)
            if t_publish < self.last_t_publish:
                # the PC's clock stepped back (seq went on) or the daemon restarted on a clock that
                # did (seq too): offsets measured before mean nothing now
                self.baseline_s = None
        self.last_seq, self.last_t_publish = seq, t_publish
        offset = t_arrival - t_publish
        if self.baseline_s is None or offset < self.baseline_s:
            self.baseline_s = offset
        else:
            self.baseline_s = min(offset, self.baseline_s + DRIFT_PER_S * (t_arrival - self._baseline_at))
        self._baseline_at = t_arrival
        lag_s = offset - self.baseline_s
        if lag_s > self.max_lag_s:
            return "seq {} arrived {:.0f} ms later than its publication allows (a backlog)".format(seq, lag_s * 1000)
        return None
