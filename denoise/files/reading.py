"""Reading a path the user gave: only a regular file (or a link to one) is opened.

Opening a FIFO blocks until someone writes into it (``report`` hung forever on a
``summary.json`` that was one), a character device such as ``/dev/zero`` reads without end,
and a folder, a socket or a link loop fail with errors that name no kind of file. Every reader
of a user's path (checkpoints, CSVs, images, ``summary.json``, a run's ``.hydra`` records)
first calls :func:`regular_file`, which looks with ``os.stat`` (which never blocks) and says in
one line what the path is instead.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from denoise.runtime.errors import UserError

KINDS = (  # what os.stat may find instead of a regular file
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def regular_file(
    path: str | os.PathLike,
    error: type[UserError] = UserError,
    missing: str = "no such file",
    folder: str | None = None,
) -> Path:
    """``path`` if it is a regular file (through any links) that this process may read, else
    ``error`` saying ``<path>: <problem>``: ``missing`` where nothing is there, ``folder`` (by
    default ``is a folder, not a file``) for a folder, the kind of anything else."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        dangling = path.is_symlink()
        raise error(
            f"{path}: {missing}"
            + (f" (a symbolic link to {os.readlink(path)}, which is not there)" if dangling else "")
        ) from None
    except OSError as problem:
        raise error(f"{path}: {_stat_problem(problem, missing)}") from None
    if stat.S_ISREG(mode):
        if not os.access(path, os.R_OK):
            raise error(f"{path}: cannot read the file (no read permission)")
        return path
    if stat.S_ISDIR(mode) and folder is not None:
        raise error(f"{path}: {folder}")
    kind = next((name for test, name in KINDS if test(mode)), "not a regular file")
    raise error(f"{path}: is {kind}, not a file")


def read_text(path: str | os.PathLike, error: type[UserError] = UserError) -> str:
    """The text of a regular file (see :func:`regular_file`); one line if it cannot be read."""
    path = regular_file(path, error)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as problem:
        raise error(
            f"{path}: not UTF-8 text (byte 0x{problem.object[problem.start]:02x})"
        ) from None
    except OSError as problem:
        raise error(f"{path}: cannot read the file ({problem.strerror or problem})") from None


def _stat_problem(problem: OSError, missing: str) -> str:
    """What an ``os.stat`` failure other than a missing file means for the user."""
    if problem.errno == errno.ELOOP:
        return "symbolic link loop"
    if problem.errno == errno.ENOTDIR:
        return f"{missing} (a part of the path is a file, not a folder)"
    if problem.errno == errno.EACCES:
        return "cannot read the file (no permission to enter its folder)"
    if problem.errno == errno.ENAMETOOLONG:
        return "the name is too long"
    return f"cannot read the file ({problem.strerror or problem})"
