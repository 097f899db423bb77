"""Telling the user where a command's outputs went: relative paths depend on the folder the
command ran from, so every command names its outputs by absolute path, at start and end."""

from __future__ import annotations

import os
from pathlib import Path


def absolute(path: str | os.PathLike) -> Path:
    """``path`` as the user can find it from any folder (no symlinks resolved)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def human_size(size: int) -> str:
    """``1536`` -> ``1.5 kB``: decimal units, as file managers show them."""
    if size < 1000:
        return f"{size} B"
    value, units = size / 1000, ["kB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"


def folder_listing(folder: str | os.PathLike, title: str) -> str:
    """``title`` and the folder's absolute path, then each file below it with its size,
    so that a run's 100 MB checkpoint never goes unnoticed."""
    folder = absolute(folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    if not files:
        return f"{title} {folder}: no files"
    width = max(len(str(path.relative_to(folder))) for path in files)
    lines = [f"{title} {folder}:"]
    lines += [
        f"  {path.relative_to(folder)!s:<{width}}  {human_size(path.stat().st_size):>9}"
        for path in files
    ]
    return "\n".join(lines)
