"""The one exception type for mistakes a user can fix: the entry points print its message, not a traceback."""


class UserError(Exception):
    """A wrong config value, a missing or corrupt file, a checkpoint of another task, a diverged run.

    The message says what is wrong and how to fix it, in a sentence or two.
    """
