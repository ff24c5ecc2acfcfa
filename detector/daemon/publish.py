"""ZeroMQ publishing of `person`, `detections` and `status` messages (schema: robot_client.protocol)."""
from __future__ import annotations

import logging
import os
import secrets

import zmq

from robot_client import protocol

from ..errors import EX_CONFIG, UserError

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, endpoint: str, send_hwm: int = 10, context: zmq.Context | None = None):
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.PUB)
        # A slow or dead subscriber costs at most `send_hwm` queued messages; PUB drops the rest.
        self.socket.setsockopt(zmq.SNDHWM, send_hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as error:
            self.socket.close()
            raise UserError(f"cannot bind the ZeroMQ publisher to {endpoint}: {error}. Is another "
                            "robot-detector running? Choose another endpoint with --pub.", EX_CONFIG) from None
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.endpoint.startswith("ipc://") and not self.endpoint.startswith("ipc://@"):  # @: abstract, no file
            # Connecting needs write permission on the socket file: the owner and its group (the tunnel's
            # user is in it, systemd/robot-detector-tunnel.service), whatever the umask; nobody else.
            os.chmod(self.endpoint[len("ipc://"):], 0o660)
        self.sent = 0
        # On every message: a client tells this daemon's messages from those of the one before it.
        self.run_id = secrets.token_hex(8)

    def send(self, topic: str, payload: dict) -> None:
        try:
            self.socket.send(protocol.encode(topic, {**payload, "run_id": self.run_id}), zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:  # PUB never blocks, but be explicit: a full queue drops, never waits
            pass

    def close(self) -> None:
        # A short linger lets the final `stopping` status leave; it bounds shutdown time too.
        self.socket.close(linger=300)


def person_message(seq: int, t_capture: float, frame_size: tuple, t_publish: float, target,
                   target_class: str = "person") -> dict:
    """The `person` topic for the tracker's Target; frame_size: (width, height) in pixels. It carries
    "cls" when it follows another class than person (--target-class)."""
    frame_w, frame_h = frame_size
    message = {"v": protocol.VERSION, "seq": seq, "t_capture": t_capture, "t_publish": t_publish,
               "frame_w": frame_w, "frame_h": frame_h, "found": target.found, "held": target.held,
               "state": target.state, "track_id": target.track_id}
    if target_class != "person":
        message["cls"] = target_class
    if not target.found:
        message.update(dict.fromkeys(protocol.PERSON_TARGET_FIELDS))
    else:
        box = target.box
        message.update(x=round(box.x, 6), y=round(box.y, 6), w=round(box.w, 6), h=round(box.h, 6),
                       area=round(box.w * box.h, 6), offset_x=round(2 * box.x - 1, 6),
                       confidence=round(target.confidence, 6))
    return message


def detections_message(seq: int, t_capture: float, frame_size: tuple, t_publish: float, detections,
                       track_ids: dict) -> dict:
    """track_ids: {id(detection): track id} for the detections of the followed class."""
    frame_w, frame_h = frame_size
    items = []
    for detection in detections:
        item = detection.to_dict()
        if id(detection) in track_ids:
            item["track_id"] = track_ids[id(detection)]
        items.append(item)
    return {"v": protocol.VERSION, "seq": seq, "t_capture": t_capture, "t_publish": t_publish,
            "frame_w": frame_w, "frame_h": frame_h, "detections": items}
