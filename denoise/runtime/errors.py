"""User errors: what a user can fix (a path, a file, a setting) reaches them as one line.

Every command runs inside :func:`user_errors`. A :class:`UserError` (or an operating-system
error about a named file, such as a full disk or a folder without write permission) becomes
``error: <what>: <problem>`` on stderr, at most one more line with the fix, and exit status 1.
Anything else is a bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback of
user errors too, for bug reports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from omegaconf import DictConfig, OmegaConf

FULL_ERROR_VARIABLE = "HYDRA_FULL_ERROR"
EXIT_STATUS = 1
QUOTED_LIMIT = 80  # characters of a value quoted in a message (a column name, a setting)
LINE_LIMIT = 1000  # characters of any line the user reads, whatever a message quotes


class UserError(Exception):
    """A problem the user can fix, said as ``<what>: <problem>``; ``fix`` says how."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class SettingError(UserError, ValueError):
    """A configuration value that cannot work, found before any work starts: one line for a
    command, a ValueError for code that passed it (the Python API)."""


def shorten(value: object, limit: int = QUOTED_LIMIT, quote: bool = False) -> str:
    """``value`` as text of about ``limit`` characters at most, ``repr``-quoted with
    ``quote``: a longer one keeps its start and end and says its length, e.g.
    ``'aaaa…aaaa' (200,000,000 characters)``. A message quotes what the user gave, and a
    column name of a file without line breaks once made a line of 839 MB."""
    text = str(value)
    if len(text) <= limit:
        return repr(text) if quote else text
    half = max(limit // 2 - 1, 1)
    cut = f"{text[:half]}…{text[-half:]}"
    return f"{repr(cut) if quote else cut} ({len(text):,} characters)"


def error_lines(error: BaseException) -> list[str]:
    """What the user reads: ``error: …`` and, where known, the fix; no line longer than
    :data:`LINE_LIMIT`, whatever a message quotes."""
    if isinstance(error, OSError) and not isinstance(error, UserError):
        where = error.filename if error.filename is not None else ""
        message = f"{where}: {error.strerror or error}" if where else str(error)
        lines = [f"error: {message}"]
    else:
        lines = [f"error: {error}"]
        fix = getattr(error, "fix", None)
        if fix:
            lines.append(str(fix))
    return [shorten(line, LINE_LIMIT) for line in lines]


def is_user_error(error: BaseException) -> bool:
    """A UserError, or an OSError about a named file (no space left, permission denied)."""
    return isinstance(error, UserError) or (
        isinstance(error, OSError) and getattr(error, "filename", None) is not None
    )


@contextmanager
def user_errors(cleanup: Callable[[], object] | None = None) -> Iterator[None]:
    """Turn user errors into one line on stderr and exit status 1 (see the module doc);
    ``cleanup`` then removes what the failed command would otherwise leave behind."""
    try:
        yield
    except Exception as error:
        if not is_user_error(error) or os.environ.get(FULL_ERROR_VARIABLE) == "1":
            raise
        if cleanup is not None:
            cleanup()
        print("\n".join(error_lines(error)), file=sys.stderr)
        raise SystemExit(EXIT_STATUS) from None


def require_settings(cfg: DictConfig, usage: str) -> None:
    """Name every missing ``???`` key at once, with the command's usage line."""
    missing = [key for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise SettingError(f"missing {', '.join(missing)}", fix=f"usage: {usage}")
