"""`robot-client --calibrate`: where does the person stand now? Reads a few `person` messages and
prints the options that make the robot keep that distance. Drives nothing."""
import time

import zmq

from . import protocol

MESSAGES = 15          # boxes to take the median of: a single box jitters by a few pixels
WAIT_S = 10.0


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def read_boxes(endpoint, count, wait_s):
    """Up to `count` found-person payloads from `endpoint` within `wait_s`; also how many
    messages arrived at all."""
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.SUBSCRIBE, protocol.PERSON.encode("ascii") + b" ")
    sock.connect(endpoint)
    boxes, received = [], 0
    deadline = time.monotonic() + wait_s
    try:
        while len(boxes) < count and time.monotonic() < deadline:
            if not sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                break
            try:
                _, payload = protocol.decode(sock.recv())
            except protocol.ProtocolError:
                continue
            received += 1
            if payload["found"]:
                boxes.append(payload)
    finally:
        sock.close()
    return boxes, received


def calibrate(endpoint, gains, out, wait_s=WAIT_S, count=MESSAGES):
    """Print the options for the person's current distance; returns the exit code (0: done)."""
    boxes, received = read_boxes(endpoint, count, wait_s)
    if not received:
        out.write("no person message from {} within {:.0f} s: is the daemon running (robot-detector run) "
                  "and the tunnel up?\n".format(endpoint, wait_s))
        return 1
    if len(boxes) < 3:
        out.write("{} messages, but the daemon saw a person in only {}: stand in front of the camera, "
                  "whole body in view, and try again\n".format(received, len(boxes)))
        return 1
    camera = gains.camera
    bottom = median([box["y"] + box["h"] / 2 for box in boxes])
    area = median([box["area"] for box in boxes])
    distance_m = camera.feet_distance_m(bottom)
    if distance_m <= camera.near_m:
        out.write("the feet are below the frame: the person is closer than {:.2f} m; step back so that "
                  "the camera sees the feet, and try again\n".format(camera.near_m))
        return 1
    out.write("person seen in {} of {} messages: feet at {:.3f} of the frame height, box area {:.3f}\n"
              .format(len(boxes), received, bottom, area))
    out.write("that is {:.2f} m from a camera {:.2f} m above the floor, looking level\n"
              .format(distance_m, camera.height_m))
    out.write("to keep this distance: robot-client --distance {:.2f} (with the same --camera-height, --hfov, "
              "--vfov)\n".format(distance_m))
    out.write("(the older way, by box area: --target-area {:.3f} --distance {:.2f})\n".format(area, distance_m))
    return 0
