"""Atomic file writes: readers see the old file or the whole new one, never a half.

The temporary file lives in the destination folder (never in ``TMPDIR``, which may be another
filesystem where a rename becomes a copy that a kill can cut short) and is renamed into place
once flushed to disk. Its name, ``.<name>.<pid>.<random>.tmp``, says whose it is: a later write
to the same destination removes the temporaries of writers that died (a SIGKILL leaves no
chance to clean up), and leaves those of live ones alone. Files that belong together (weights
and their model card) are written as a group (:func:`atomic_files`): all land, or none. An
operating-system error names the destination, the path the user knows, never a temporary.
"""

from __future__ import annotations

import os
import secrets
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
    An operating-system error (a full disk, no permission) names ``path``, never the
    temporary file, which is gone.
    """
    with atomic_files(replace) as files, files.add(path, mode) as handle:
        yield handle


class AtomicFiles:
    """Files that belong together (weights and their model card): each is written to a
    temporary file by :meth:`add`, and all are renamed into place when the group ends."""

    def __init__(self, replace: bool = True) -> None:
        self.replace = replace
        self.finished: list[tuple[Path, Path]] = []  # (temporary, destination)

    @contextmanager
    def add(self, path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
        """A temporary file for ``path``, flushed to disk and kept for the group's end."""
        path = Path(path)
        with naming(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path)
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below
                dir=path.parent,
                prefix=f"{temporary_prefix(path)}{os.getpid()}.",
                suffix=TEMP_SUFFIX,
                delete=False,
                mode=mode,
            )
            temporary = Path(handle.name)
            try:
                with handle:
                    yield handle
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(temporary, 0o666 & ~_umask())  # what open() gives, not mkstemp's 0600
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        self.finished.append((temporary, path))

    def publish(self) -> None:
        """Rename every file into place; if one fails, the ones already renamed go back to
        what was there before (the old file, or nothing), so the group lands whole or not."""
        if not self.replace:
            for temporary, path in self.finished:
                with naming(path):
                    _publish_unless_present(temporary, path)
            return
        done: list[tuple[Path, Path | None]] = []  # (destination, its old file set aside)
        try:
            for temporary, path in self.finished:
                with naming(path):
                    old = _set_aside(path) if len(self.finished) > 1 else None
                    try:
                        os.replace(temporary, path)
                    except BaseException:
                        if old is not None:
                            old.unlink()
                        raise
                    done.append((path, old))
        except BaseException:
            for path, old in reversed(done):
                if old is None:
                    path.unlink(missing_ok=True)
                else:
                    os.replace(old, path)
            raise
        for _, old in done:
            if old is not None:
                old.unlink(missing_ok=True)

    def discard(self) -> None:
        for temporary, _ in self.finished:
            temporary.unlink(missing_ok=True)


@contextmanager
def atomic_files(replace: bool = True) -> Iterator[AtomicFiles]:
    """A group of atomic writes (:class:`AtomicFiles`): every file new, or every one as it
    was; temporaries never outlive the group."""
    files = AtomicFiles(replace)
    try:
        yield files
        files.publish()
    finally:
        files.discard()


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Re-raise an operating-system error about ``path``'s temporary file, or about no file
    (a write that found the disk full), as one about ``path``: the user named that one."""
    try:
        yield
    except OSError as error:
        if error.errno is None or not _about_temporary(error, path):
            raise
        raise OSError(error.errno, error.strerror or str(error), os.fspath(path)) from error


def _about_temporary(error: OSError, path: Path) -> bool:
    named = error.filename
    return named is None or Path(os.fsdecode(named)).name.startswith(temporary_prefix(path))


def _set_aside(path: Path) -> Path | None:
    """A hard link to the file at ``path`` (named as a temporary, so a dead writer's is
    cleaned up), to put it back if the group fails; None if there is none to keep."""
    if not path.is_file():
        return None
    old = (
        path.parent
        / f"{temporary_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}.old{TEMP_SUFFIX}"
    )
    try:
        os.link(path, old, follow_symlinks=False)
    except OSError:  # a filesystem without hard links: a failed group leaves nothing there
        return None
    return old


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
