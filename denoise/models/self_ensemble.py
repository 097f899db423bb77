"""Geometric self-ensemble: restore an image in several flips and rotations, average the results.

Salt-and-pepper noise and natural images look alike in every orientation, but a trained
network does not answer exactly alike: its errors in the eight orientations of the square
(four rotations, each with and without a mirror) are partly independent, so their average
is better than any one of them (the "+" models of EDSR, Lim et al., 2017). The price is one
forward pass per view. On the shipped natural model, on train400's 40 validation images, 8
views gain 0.24 dB at 50% noise and 0.12-0.15 dB at 90-95%.

Pixels the corruption-aware design keeps come back exactly in every view, so they stay
exact in the average.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

VIEW_COUNTS = (1, 2, 4, 8)  # 2: two rotations; 4: the four rotations; 8: each mirrored too

Restore = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def to_view(images: torch.Tensor, view: int) -> torch.Tensor:
    """View ``view`` (0-7) of ``(..., H, W)`` images: mirrored for views 4-7, then rotated
    by ``view % 4`` quarter turns."""
    mirrored = images.flip(-1) if view >= 4 else images
    return torch.rot90(mirrored, view % 4, dims=(-2, -1))


def from_view(images: torch.Tensor, view: int) -> torch.Tensor:
    """Undo :func:`to_view`."""
    unrotated = torch.rot90(images, -(view % 4), dims=(-2, -1))
    return unrotated.flip(-1) if view >= 4 else unrotated


def check_view_count(views: int) -> int:
    if isinstance(views, bool) or views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))}, got {views!r}")
    return views


def restore_in_views(
    restore: Restore, noisy: torch.Tensor, views: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The average of ``restore`` over ``views`` orientations of ``noisy``, and the majority
    of its noise decisions (None if ``restore`` makes none). One view at a time, so memory
    stays that of a single pass."""
    check_view_count(views)
    total: torch.Tensor | None = None
    votes: torch.Tensor | None = None
    for view in range(views):
        restored, judged_noise = restore(to_view(noisy, view))
        # float64 sums of at most 8 float32 values are exact, and views is a power of two:
        # a pixel every view returns unchanged (a kept pixel) comes back bit for bit
        restored = from_view(restored, view).double()
        total = restored if total is None else total + restored
        if judged_noise is not None:
            judged = from_view(judged_noise, view).to(torch.int16)
            votes = judged if votes is None else votes + judged
    assert total is not None
    decisions = None if votes is None else votes * 2 > views
    return (total / views).float(), decisions
