"""Geometric self-ensemble: restore an image in several flips and rotations, average the results.

A trained network does not answer exactly alike in every orientation of an image: its errors
are partly independent, so their average is better than any one of them (the "+" models of
EDSR, Lim et al., 2017). The price is one forward pass per view. The views come in the order
that keeps pictures upright longest: 2 = as given and mirrored left to right; 4 = also upside
down (both flips); 8 = each of those transposed, the eight symmetries of the square.

Which count suits a model depends on what it learned. The natural-image model trained on
crops in every orientation: on train400's 40 validation images its 8 views gain 0.24 dB at
50% noise and 0.12-0.14 dB at 90-95%. The face model trained on upright faces, the mirror
only: on 600 FER2013 PrivateTest faces the mirrored pass gains 0.09-0.13 dB, while a
quarter-turned face alone loses 0.26-0.65 dB, and 8 views lose 0.16 dB at 90%.

Pixels the corruption-aware design keeps come back exactly in every view, so they stay
exact in the average.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from denoise.models.denoiser import Restorer, Wrapper
from denoise.runtime.errors import SettingError
from denoise.runtime.settings import shown

VIEW_COUNTS = (1, 2, 4, 8)  # 2: mirrored too; 4: upside down too; 8: all transposed too

Restore = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def to_view(images: torch.Tensor, view: int) -> torch.Tensor:
    """View ``view`` (0-7) of ``(..., H, W)`` images: bit 0 mirrors left to right, bit 1
    flips upside down, bit 2 then swaps rows and columns."""
    if view & 1:
        images = images.flip(-1)
    if view & 2:
        images = images.flip(-2)
    return images.transpose(-2, -1) if view & 4 else images


def from_view(images: torch.Tensor, view: int) -> torch.Tensor:
    """Undo :func:`to_view` (the transposition first: it does not commute with the flips)."""
    if view & 4:
        images = images.transpose(-2, -1)
    if view & 2:
        images = images.flip(-2)
    return images.flip(-1) if view & 1 else images


class ViewCountError(SettingError, ValueError):
    """A count of views that is not one of :data:`VIEW_COUNTS`: one line for a command's
    setting, a ValueError for code."""


def check_view_count(views: object, name: str = "views") -> int:
    """``views`` itself, if it is one of :data:`VIEW_COUNTS` (``True`` is not 1 here): the one
    check of a count of views, wherever it is set (``name``: the setting, for the message)."""
    if isinstance(views, bool) or views not in VIEW_COUNTS:
        listed = ", ".join(map(str, VIEW_COUNTS))
        raise ViewCountError(f"{name}={shown(views)}: must be one of {listed}")
    return views  # type: ignore[return-value]


def restore_in_views(
    restore: Restore, noisy: torch.Tensor, views: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The average of ``restore`` over ``views`` orientations of ``noisy``, and the majority
    of its noise decisions (None if ``restore`` makes none). One view at a time, so memory
    stays that of a single pass."""
    if check_view_count(views) == 1:
        return restore(noisy)  # no float64 round trip for the common single pass
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


class SelfEnsemble(Wrapper):
    """``inner`` averaged over ``views`` orientations (:func:`restore_in_views`); build one
    with :func:`self_ensemble`."""

    def __init__(self, inner: Restorer, views: int) -> None:
        if inner.views != 1:
            raise ValueError(
                f"already averaged over {inner.views} views: wrap the model itself instead"
            )
        super().__init__(inner)
        self.views = check_view_count(views)

    @property
    def autocast(self) -> torch.dtype | None:
        return self.inner.autocast

    def denoise_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        restored, judged_noise = restore_in_views(self.inner.denoise_and_decide, noisy, self.views)
        return restored.contiguous(), judged_noise


def self_ensemble(model: Restorer, views: int) -> Restorer:
    """``model`` restoring in ``views`` orientations: itself for one (no wrapper to pass
    through), else a :class:`SelfEnsemble` around it. ``model`` is left as it is, so a
    caller that picks views per picture wraps the same model again."""
    return model if check_view_count(views) == 1 else SelfEnsemble(model, views)
