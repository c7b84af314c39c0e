"""The one exception type for mistakes a user can fix: the entry points print its message, not a traceback."""
from __future__ import annotations

import errno
import shutil
from pathlib import Path


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


def out_of_space(error: BaseException | None) -> OSError | None:
    """The "no space left" (or quota) error behind an exception, if one is: torch's writer, failing on a full disk,
    raises its own error while the OSError is being handled."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__ or error.__context__
    return None


class DiskFull(UserError):
    """No space (or quota) left for a file the app writes. What was there before is whole: the file was being
    written under a temporary name."""

    def __init__(self, path: Path, error: OSError | None = None):
        path = Path(path)
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there now"
        except OSError:
            free = "its folder cannot be read"
        kept = f"; the earlier {path.name} is whole" if path.is_file() else ""
        resume = f", then resume with ckpt_path={path}" if path.is_file() and path.suffix == ".ckpt" else ""
        what = "no space left" if error is None or error.errno == errno.ENOSPC else "disk quota exceeded"
        super().__init__(f"{what} on the device writing {path} ({free}): it was not written{kept}. Free some "
                         f"space (or write elsewhere: paths.log_dir=<folder>){resume}.")

