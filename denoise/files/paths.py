"""Paths as the user reads them. Apart from :mod:`denoise.files.outputs` (a Hydra callback),
so that code without Hydra (the Python API, the inference engines) can name a file."""

from __future__ import annotations

import os
from pathlib import Path


def absolute(path: str | os.PathLike) -> Path:
    """``path`` as the user can find it from any folder (no symlinks resolved)."""
    return Path(os.path.abspath(Path(path).expanduser()))
