"""The robot side of robot-detector: a small ZeroMQ client that runs on a LEGO EV3 brick.

Everything in this package runs on Python 3.5 with Debian's pyzmq: no f-strings, no variable
annotations, no dataclasses, no numpy (checked by vermin in the test suite).
"""
