"""The wire schema of robot-detector's ZeroMQ messages: the one definition both sides use.

A message is ONE frame: an ASCII topic, one space, a UTF-8 JSON object. Single-frame messages let
a subscriber use ZMQ_CONFLATE and see only the newest one. Times are Unix seconds; coordinates
are fractions of the frame (x, y: box centre; w, h: box size).

Python 3.5 compatible (the daemon imports it too), standard library only.
"""
import json
import math
import re

VERSION = 1
PERSON, DETECTIONS, STATUS = "person", "detections", "status"
TOPICS = (PERSON, DETECTIONS, STATUS)
STATES = ("starting", "running", "camera_lost", "stopping")

NUMBER = (int, float)
# Fields of each topic and the types they may hold (None: null allowed).
PERSON_TARGET_FIELDS = ("x", "y", "w", "h", "area", "offset_x", "confidence")
SCHEMA = {
    PERSON: {"v": int, "seq": int, "t_capture": NUMBER, "t_publish": NUMBER, "frame_w": int,
             "frame_h": int, "found": bool,
             "x": NUMBER + (type(None),), "y": NUMBER + (type(None),), "w": NUMBER + (type(None),),
             "h": NUMBER + (type(None),), "area": NUMBER + (type(None),),
             "offset_x": NUMBER + (type(None),), "confidence": NUMBER + (type(None),)},
    DETECTIONS: {"v": int, "seq": int, "t_capture": NUMBER, "t_publish": NUMBER, "frame_w": int,
                 "frame_h": int, "detections": list},
    STATUS: {"v": int, "t": NUMBER, "state": str, "fps": NUMBER, "latency_ms": dict, "frames": int,
             "dropped": int, "engine": str, "device": str, "demo": bool},
}
# Fields a sender may leave out (older daemons do); when present they must have these types.
# run_id: random per daemon start, on every topic, so that a client can tell a new daemon from the old.
TARGET_STATES = ("tracking", "held", "lost")  # person.state: tracking/held while found, lost otherwise
OPTIONAL = {
    PERSON: {"run_id": str, "held": bool,
             "cls": str,  # the followed class, when not person (--target-class)
             "track_id": (int, type(None)),  # the followed track's id; null when found is false
             "state": str},  # one of TARGET_STATES
    DETECTIONS: {"run_id": str},
    STATUS: {"run_id": str,
             "live": bool,  # false for a file, `synthetic` or --demo; absent (older daemon): live
             "reason": (str, type(None))},  # why the state is what it is (e.g. camera_lost: "frozen")
}
DETECTION_FIELDS = {"cls": str, "cls_id": int, "confidence": NUMBER, "x": NUMBER, "y": NUMBER,
                    "w": NUMBER, "h": NUMBER}
DETECTION_OPTIONAL = {"track_id": (int, type(None))}  # items of the target class: their track's id
# The largest message a receiver takes (bytes; ZMQ_MAXMSGSIZE): a person message is about 300, a
# detections message with Tiny-YOLO's most boxes (98) about 15000.
MAX_MESSAGE_BYTES = 65536
# Deepest nesting of arrays and objects accepted (messages use 3). json.loads recurses per level
# and raises RecursionError near 1000; a message nested deeper than this is refused before parsing.
MAX_DEPTH = 16
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class ProtocolError(ValueError):
    """A message that does not follow this schema."""


def encode(topic, payload):
    """(topic, dict) -> the single message frame as bytes."""
    if topic not in TOPICS:
        raise ProtocolError("unknown topic {!r}".format(topic))
    return topic.encode("ascii") + b" " + json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode(frame):
    """The message frame (bytes) -> (topic, dict), checked against the schema."""
    if not isinstance(frame, bytes):
        raise ProtocolError("expected bytes, got {}".format(type(frame).__name__))
    topic, sep, body = frame.partition(b" ")
    if not sep:
        raise ProtocolError("expected 'topic json', found no space")
    _check_depth(body)
    try:
        topic = topic.decode("ascii")
        payload = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except ProtocolError:
        raise
    except (UnicodeDecodeError, ValueError) as error:
        raise ProtocolError("unreadable message: {}".format(error))
    validate(topic, payload)
    return topic, payload


def _check_depth(body):
    """ProtocolError if arrays and objects in `body` nest deeper than MAX_DEPTH. Brackets inside
    strings do not count; the scan stops at the first level too deep."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return  # the usual case, decided at C speed (the brick's CPU runs at 300 MHz)
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise ProtocolError("arrays and objects nested deeper than {} levels".format(MAX_DEPTH))
        elif token in (b"]", b"}"):
            depth -= 1


def _refuse_constant(name):
    # json.loads accepts NaN, Infinity and -Infinity, which are not JSON and would reach `clamp`
    raise ProtocolError("non-finite number {} (expected a finite number)".format(name))


def _non_finite(value, path):
    """The path of the first non-finite float in `value` (e.g. 1e999 parses as inf), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, "{}.{}".format(path, key))
        if found:
            return found
    return None


def _check_fields(payload, fields, what):
    if not isinstance(payload, dict):
        raise ProtocolError("{}: expected a JSON object, found {}".format(what, type(payload).__name__))
    for name, types in fields.items():
        if name not in payload:
            raise ProtocolError("{}: missing field '{}'".format(what, name))
        value = payload[name]
        # bool is an int in Python: only accept it where bool is what is asked for
        if isinstance(value, bool) and types is not bool:
            raise ProtocolError("{}: field '{}' must not be a boolean".format(what, name))
        if not isinstance(value, types):
            raise ProtocolError("{}: field '{}' has type {}".format(what, name, type(value).__name__))


def _check_optional(payload, fields, what):
    _check_fields(payload, dict((k, t) for k, t in fields.items() if k in payload), what)


def validate(topic, payload):
    """Raise ProtocolError unless `payload` is a valid message of `topic`."""
    if topic not in SCHEMA:
        raise ProtocolError("unknown topic {!r}".format(topic))
    _check_fields(payload, SCHEMA[topic], topic)
    _check_optional(payload, OPTIONAL[topic], topic)
    where = _non_finite(payload, topic)
    if where:
        raise ProtocolError("{}: non-finite number (expected a finite number)".format(where))
    if payload["v"] != VERSION:
        raise ProtocolError("{}: version {} is not {}".format(topic, payload["v"], VERSION))
    if topic == PERSON:
        values = [payload[name] for name in PERSON_TARGET_FIELDS]
        if payload["found"] and None in values:
            raise ProtocolError("person: found is true but a position field is null")
        if not payload["found"] and any(value is not None for value in values):
            raise ProtocolError("person: found is false but position fields are set")
        if payload.get("held") and not payload["found"]:
            raise ProtocolError("person: held is true but found is false")
        state = payload.get("state")
        if state is not None and state not in TARGET_STATES:
            raise ProtocolError("person: unknown state {!r} (expected one of {})".format(state, ", ".join(TARGET_STATES)))
        if state is not None and (state == "lost") == payload["found"]:
            raise ProtocolError("person: state {!r} contradicts found {}".format(state, payload["found"]))
        if payload.get("track_id") is not None and not payload["found"]:
            raise ProtocolError("person: track_id is set but found is false")
    elif topic == DETECTIONS:
        for index, item in enumerate(payload["detections"]):
            _check_fields(item, DETECTION_FIELDS, "detections[{}]".format(index))
            _check_optional(item, DETECTION_OPTIONAL, "detections[{}]".format(index))
    elif topic == STATUS:
        if payload["state"] not in STATES:
            raise ProtocolError("status: unknown state {!r}".format(payload["state"]))
        _check_fields(payload["latency_ms"], {"p50": NUMBER, "p95": NUMBER}, "status.latency_ms")
