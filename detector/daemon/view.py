"""`robot-detector view`: print the daemon's messages, one a line."""
from __future__ import annotations

import zmq

from robot_client import protocol


def run_view(endpoint: str, topics: list, count: int | None = None, timeout_s: float | None = None) -> int:
    """Print `topic json` lines; stop after `count` messages or `timeout_s` seconds of silence."""
    context = zmq.Context.instance()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    for topic in topics or protocol.TOPICS:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode() + b" ")
    socket.connect(endpoint)
    printed = 0
    try:
        while count is None or printed < count:
            if not socket.poll(None if timeout_s is None else timeout_s * 1000):
                return 1 if printed == 0 else 0
            frame = socket.recv()
            try:
                protocol.decode(frame)
                print(frame.decode("utf-8", "replace"), flush=True)
            except protocol.ProtocolError as error:
                print(f"# malformed message ({error}): {frame[:200]!r}", flush=True)
            printed += 1
    finally:
        socket.close()
    return 0
