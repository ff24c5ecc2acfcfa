"""The daemon: capture -> predict -> track -> publish, the debug stream, and its configuration."""
