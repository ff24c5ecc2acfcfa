"""What happens to the followed target, as the daemon's `person` messages tell it: logged, and with
--beep signalled through ev3dev2's Sound, so that the person walking ahead hears it too.

Events: `lost` (found goes false), `reacquired` (found again, the same track or no ids to tell),
`changed` (found again or still, but another track_id: someone else is followed now). Older daemons
send neither `state` nor `track_id`: their state comes from `found` and `held`.
"""
BEEP_PROGRAM = "/usr/bin/beep"  # what ev3dev2's Sound.beep runs
# beep(1) arguments per event: a falling pair for lost, a rising one for found, three for a change
TONES = {"lost": "-f 880 -l 120 -n -f 440 -l 200",
         "reacquired": "-f 440 -l 120 -n -f 880 -l 120",
         "changed": "-f 660 -l 80 -r 3 -d 60"}


def target_state(message):
    """'tracking', 'held' or 'lost' of a person message, also of a daemon that does not say it."""
    state = message.get("state")
    if state is not None:
        return state
    if not message["found"]:
        return "lost"
    return "held" if message.get("held") else "tracking"


class Beeper(object):
    """Tones through ev3dev2's Sound, which runs `program` (beep(1)) without waiting for it."""

    def __init__(self, program=BEEP_PROGRAM, log=None):
        from ev3dev2.sound import Sound  # imported here: without --beep the client needs no sound
        self.sound = Sound()
        self.program = program
        self.log = log
        self._playing = None   # the beep process started last
        self._failed = False   # the program could not be started (said once)

    def play(self, event):
        if self._playing is not None and self._playing.poll() is None:
            self._playing.kill()  # the newest event is the one to hear; never queue up tones
        try:
            # Sound.beep hard-codes /usr/bin/beep; its command runner takes any program
            self._playing = self.sound._audio_command("{} {}".format(self.program, TONES[event]),
                                                      self.sound.PLAY_NO_WAIT_FOR_COMPLETE)
        except OSError as error:
            self._playing = None
            if self.log and not self._failed:
                self.log.warning("cannot beep with %s: %s (the log still says what happened)", self.program, error)
            self._failed = True

    def close(self):
        if self._playing is not None and self._playing.poll() is None:
            self._playing.wait()


class TargetWatch(object):
    """Turns the stream of person messages into logged (and beeped) target events."""

    def __init__(self, log, beeper=None):
        self.log = log
        self.beeper = beeper
        self.state = None        # of the latest message; None before the first one
        self.track_id = None     # of the latest followed track (kept while lost, to tell a return)
        self.events = 0

    def on_person(self, message):
        state, track_id = target_state(message), message.get("track_id")
        event = None
        if state == "lost":
            if self.state in ("tracking", "held"):
                event = "lost"
        elif self.state in (None, "lost"):
            event = "changed" if None not in (track_id, self.track_id) and track_id != self.track_id else "reacquired"
        elif track_id is not None and self.track_id is not None and track_id != self.track_id:
            event = "changed"
        if state != self.state:
            self.log.info("target %s%s", state, "" if track_id is None else " (track {})".format(track_id))
        if event is not None:
            self.events += 1
            if event == "changed":
                self.log.warning("target changed from track %s to track %s", self.track_id, track_id)
            if self.beeper is not None:
                self.beeper.play(event)
        self.state = state
        if track_id is not None:
            self.track_id = track_id

    def reset(self):
        """A new daemon run: its track ids are not the old run's."""
        self.track_id = None
