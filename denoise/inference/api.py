"""The Python API: ``from denoise import restore, Denoiser, add_salt_and_pepper``.

Restore a picture from your own code as ``predict`` restores a file: the same models, views,
tiles and defaults (``conf/predict.yaml`` owns them: :data:`~denoise.inference.restorer.DEFAULTS`),
through the same :class:`~denoise.inference.restorer.PictureRestorer`, which ``predict`` reaches
through :class:`Denoiser` too. A picture comes back in the type, layout and device it was
given (:mod:`denoise.files.pictures`). This :class:`Denoiser` is the user's handle on a loaded
model; :class:`denoise.models.denoiser.Denoiser` is the network inside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, overload

import numpy as np

from denoise.data.noise import Amount
from denoise.data.noisy_files import noisy_arrays
from denoise.files.pictures import PICTURE_NAME, Picture, PictureError, unpack
from denoise.inference.checkpoints import CheckpointError
from denoise.inference.restorer import DEFAULTS, PictureRestorer
from denoise.inference.shipped import SHIPPED_NAMES
from denoise.inference.tiling import TILING_KEYS
from denoise.runtime.errors import UserError

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11

Weights = str | os.PathLike[str]


class Settings(TypedDict, total=False):
    """``predict``'s keywords; each left out takes ``conf/predict.yaml``'s default (None: the
    model's own)."""

    device: str  # auto (the GPU when there is one), cpu, cuda, cuda:1, …
    precision: str  # fp32, bf16 or auto
    self_ensemble: int | None  # views averaged: 1, 2, 4 or 8
    tile_size: int | None
    overlap: int | None
    batch_size: int | None
    engine: str  # torch or onnxruntime
    cache_dir: str | os.PathLike[str]  # where engine=onnxruntime keeps its conversions


class Denoiser:
    """A denoiser loaded once, restoring many pictures: ``Denoiser.from_pretrained("natural")``.
    Call it on a picture, a list of pictures or a batch tensor."""

    def __init__(self, restorer: PictureRestorer) -> None:
        self.restorer = restorer

    @classmethod
    def from_pretrained(
        cls, weights: Weights = DEFAULTS["weights"], **settings: Unpack[Settings]
    ) -> Denoiser:
        """``weights``: a shipped model's name (``natural``: photos; ``faces``: 48×48 faces) or
        a checkpoint of ``python -m denoise.train``; ``settings``: :class:`Settings`. Loaded
        now, so that a bad file fails here rather than on the first picture."""
        name, ckpt_path = _named_weights(weights)
        known = Settings.__annotations__
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise TypeError(f"unknown setting {', '.join(unknown)}: one of {', '.join(known)}")
        chosen: dict[str, Any] = dict(settings)
        tiling = {key: chosen.pop(key) for key in TILING_KEYS if key in chosen}
        restorer = PictureRestorer(ckpt_path, name, tiling=tiling, **chosen)
        restorer.model(grey=True)  # a shipped colour model loads with the first colour picture
        return cls(restorer)

    @overload
    def __call__(self, picture: Picture) -> Picture: ...
    @overload
    def __call__(self, picture: list[Picture]) -> list[Picture]: ...
    def __call__(self, picture: Any) -> Any:  # typed by the overloads above
        """The restored picture(s), each in the type, layout, pixel type and device given."""
        if isinstance(picture, list):
            return [self(one) for one in picture]
        arrays, pack = unpack(picture)
        return pack([self.restore_array(array) for array in arrays])

    def restore_array(
        self,
        array: np.ndarray,
        name: str | os.PathLike[str] = PICTURE_NAME,
        error: type[UserError] = PictureError,
    ) -> np.ndarray:
        """One array in :func:`~denoise.files.images.read_image`'s layouts, refused first as
        ``error`` naming ``name`` if its tiles or planes would not fit memory: what ``predict``
        restores each file with (its name, ImageError)."""
        self.restorer.check(Path(name), array, error=error)
        return self.restorer.restore(array)

    def __repr__(self) -> str:
        return f"Denoiser({self.restorer.name})"


def _named_weights(weights: Weights) -> tuple[str, Path | None]:
    """(a shipped model's name, a checkpoint path or None) for ``weights``."""
    if isinstance(weights, str) and weights in SHIPPED_NAMES:
        return weights, None
    if not isinstance(weights, str | os.PathLike):
        raise TypeError(
            f"weights of type {type(weights).__name__}: use {' or '.join(SHIPPED_NAMES)}, "
            "or a checkpoint's path"
        )
    path = Path(weights).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"weights={str(weights)!r}: neither a shipped model ({', '.join(SHIPPED_NAMES)}) "
            "nor a checkpoint file"
        )
    return DEFAULTS["weights"], path


@overload
def restore(picture: Picture, weights: Weights = ..., **settings: Unpack[Settings]) -> Picture: ...
@overload
def restore(
    picture: list[Picture], weights: Weights = ..., **settings: Unpack[Settings]
) -> list[Picture]: ...
def restore(
    picture: Any, weights: Weights = DEFAULTS["weights"], **settings: Unpack[Settings]
) -> Any:  # typed by the overloads above
    """``picture`` (or a list of them) restored by ``weights``: see
    :meth:`Denoiser.from_pretrained`. Loads the model on each call: for many pictures, keep a
    :class:`Denoiser`."""
    return Denoiser.from_pretrained(weights, **settings)(picture)


def add_salt_and_pepper(
    picture: Picture,
    amount: Amount,
    seed: int | None = None,
    per_channel: bool = True,
    *,
    salt_vs_pepper: float = 0.5,
) -> Picture:
    """A noisy copy of ``picture`` in its own type: the noise training draws, and for the
    same ``seed`` the very draws of ``python -m denoise.add_noise`` (None: fresh noise). A
    batch's images follow one another on one generator. Without ``per_channel`` a hit turns
    the whole pixel black or white."""
    arrays, pack = unpack(picture)
    return pack(noisy_arrays(arrays, amount, salt_vs_pepper, seed, per_channel))
