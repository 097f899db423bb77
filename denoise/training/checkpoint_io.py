"""Checkpoints written atomically in their own folder, whatever ``TMPDIR`` is.

Lightning writes a checkpoint straight to its final path, so a kill during the write (or a
copy from another filesystem) leaves a truncated ``best.ckpt`` that looks like a checkpoint.
Here each one is written to a temporary file beside it and renamed into place
(:func:`denoise.files.atomic.atomic_file`), so a kill leaves the old file or the new one.
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
            torch.save(checkpoint, handle)
