"""The one exception type for mistakes a user can fix: the entry points print its message, not a traceback."""


class UserError(Exception):
    """A wrong config value, a missing or corrupt file, a checkpoint of another task, a diverged run.

    The message says what is wrong and how to fix it, in a sentence or two. The entry points print it after
    `prefix` and end with `exit_code`.
    """

    exit_code = 2
    prefix = "error: "


class Stopped(UserError):
    """The run was told to stop (SIGTERM): exit status 128 + 15, as a process killed by SIGTERM reports."""

    exit_code = 143
    prefix = ""
