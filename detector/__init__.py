"""robot-detector: a Tiny-YOLO v1 person detector daemon for robots."""

__version__ = "0.1.0"
