"""Atomic file writes: readers see the old file or the whole new one, never a half.

The temporary file lives in the destination folder (never in ``TMPDIR``, which may be another
filesystem where a rename becomes a copy that a kill can cut short) and is renamed into place
once flushed to disk. Its name, ``.<name>.<pid>.<random>.tmp``, says whose it is: a later write
to the same destination removes the temporaries of writers that died (a SIGKILL leaves no
chance to clean up), and leaves those of live ones alone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from denoise.runtime.machine import process_is_alive

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries that dead writers left beside ``path``; return them."""
    removed = []
    prefix = temporary_prefix(path)
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.iterdir():
        name = candidate.name
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and not process_is_alive(int(pid_text)):
            with suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


@contextmanager
def atomic_file(
    path: str | os.PathLike, mode: str = "wb", replace: bool = True
) -> Iterator[IO[Any]]:
    """Write into a temporary file beside ``path`` and rename it over ``path`` on success.

    ``replace=False`` keeps a file that another process put at ``path`` first (and drops
    this one): writers of the same content at once then leave one file with one timestamp.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, before the rename
        dir=path.parent,
        prefix=f"{temporary_prefix(path)}{os.getpid()}.",
        suffix=TEMP_SUFFIX,
        delete=False,
        mode=mode,
    )
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())  # what open() would give, not mkstemp's 0600
        if replace:
            os.replace(handle.name, path)
        else:
            _publish_unless_present(Path(handle.name), path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _publish_unless_present(temporary: Path, path: Path) -> None:
    """Link the finished file into place only if nothing is there yet (atomic, unlike an
    exists-then-rename check); filesystems without hard links fall back to a rename."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    except OSError:
        os.replace(temporary, path)
        return
    temporary.unlink(missing_ok=True)
