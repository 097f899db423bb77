"""Checkpoints written atomically in their own folder, whatever ``TMPDIR`` is.

Lightning writes a checkpoint straight to its final path, so a kill during the write (or a
copy from another filesystem) leaves a truncated ``best.ckpt`` that looks like a checkpoint.
Here each one is written to a temporary file beside it and renamed into place
(:func:`denoise.files.atomic.atomic_file`), so a kill leaves the old file or the new one,
and a full disk is one line naming the checkpoint (``atomic_file`` names it).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from denoise.files.atomic import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, written through :func:`atomic_file`."""

    def save_checkpoint(
        self,
        checkpoint: dict[str, Any],
        path: str | os.PathLike,
        storage_options: Any | None = None,
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_file(path) as handle:
            try:
                torch.save(checkpoint, handle)
            except RuntimeError as error:
                cause = os_error_within(error)
                if cause is None:
                    raise
                raise cause from error


def os_error_within(error: BaseException) -> OSError | None:
    """The operating-system error behind ``error``, if any: when a write fails (a full disk),
    torch's zip writer, closing on the way out, raises its own ``RuntimeError`` ("unexpected
    pos …") over the ``OSError`` that says what happened."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
