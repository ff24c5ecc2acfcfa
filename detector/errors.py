"""The one exception type that user-facing commands turn into a clear message and an exit code."""

# sysexits.h EX_CONFIG: systemd units use it (RestartPreventExitStatus=78) to stop restarting a
# daemon that cannot work until a person fixes its configuration or installs weights.
EX_CONFIG = 78
EX_FAILURE = 1


class UserError(Exception):
    """Something the user can fix. The message says what was expected, what was found, and what
    to do; the CLI prints it without a traceback and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EX_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code
