"""The work behind the demo page, without the page: the sample pictures, the training noise,
restoring as ``predict`` does, the scores, and the file to download.

Nothing here is the page's own version of a command's work: pictures are read with
:func:`~denoise.files.images.read_image` (predict's limits and colour handling), noised with
the Python API's :func:`~denoise.inference.api.add_salt_and_pepper` (``add_noise``'s draws
for the same seed), restored by the API's :class:`~denoise.inference.api.Denoiser` (what
``predict`` restores each file with) and written with :func:`~denoise.files.images.write_image`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from denoise.files.images import (
    check_writable,
    from_unit_float,
    image_to_tensor,
    to_unit_float,
    write_image,
)
from denoise.inference.api import Denoiser, add_salt_and_pepper
from denoise.inference.restore_files import checked_restoring
from denoise.inference.tiling import TILING_KEYS
from denoise.runtime.errors import UserError
from denoise.web.choices import SAMPLES


@dataclass(frozen=True)
class Restoring:
    """The settings of one restore, named as in ``conf/predict.yaml``; frozen, so that each
    combination keeps its loaded models."""

    weights: str = "natural"
    self_ensemble: int | None = None
    precision: str = "fp32"
    device: str = "auto"
    tile_size: int | None = None
    overlap: int | None = None
    batch_size: int | None = None


def checked_settings(cfg: DictConfig) -> tuple[Restoring, int | None]:
    """The restoring settings and ``max_pixels`` of the demo's config, checked as ``predict``
    checks its own, so that a wrong one is one line, not a failing page."""
    restoring, max_pixels = checked_restoring(cfg)
    return Restoring(**restoring), max_pixels


def sample_picture(label: str) -> np.ndarray:
    """One of :data:`SAMPLES`, from the scikit-image wheel (nothing is downloaded)."""
    from skimage import data  # scikit-image loads only once a sample is asked for

    if label not in SAMPLES:
        raise UserError(f"{label}: no such sample (one of {', '.join(SAMPLES)})")
    return getattr(data, SAMPLES[label])()


def noisy(picture: np.ndarray, amount: float, seed: int) -> np.ndarray:
    """The picture with ``add_noise``'s noise (``amount=`` and ``seed=`` as there); no noise
    at 0, where the picture is taken to be noisy already."""
    return add_salt_and_pepper(picture, amount, seed=seed) if amount > 0 else picture


@functools.lru_cache(maxsize=4)
def _denoiser(settings: Restoring) -> Denoiser:
    return Denoiser.from_pretrained(
        settings.weights,
        device=settings.device,
        precision=settings.precision,
        self_ensemble=settings.self_ensemble,
        **{key: getattr(settings, key) for key in TILING_KEYS},
    )


def restore(picture: np.ndarray, settings: Restoring, name: str = "picture") -> np.ndarray:
    """The restored picture, exactly as ``predict`` restores a file with these settings: the
    page's one way to a model (its models stay loaded between restores)."""
    return _denoiser(settings).restore_array(picture, name)


def warm_up(settings: Restoring) -> None:
    """Load the models that ``settings`` restores with, before the first restore needs them."""
    restorer = _denoiser(settings).restorer
    for grey in (True, False):
        restorer.model(grey)


def scores(restored: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``restored`` against ``clean``, per image as ``evaluate``
    scores them (:func:`~denoise.models.metrics.image_metrics`)."""
    from denoise.models.metrics import image_metrics  # torchmetrics: only once scored

    restored_planes, clean_planes = image_to_tensor(restored)[0], image_to_tensor(clean)[0]
    values = image_metrics()(restored_planes[None], clean_planes[None])
    return {"psnr": float(values["psnr"]), "ssim": float(values["ssim"])}


def shown(picture: np.ndarray) -> np.ndarray:
    """The picture as 8 bits, as a browser shows it (16-bit and float pictures included)."""
    if picture.dtype == np.uint8:
        return picture
    return from_unit_float(to_unit_float(picture), np.uint8)


def restored_file(
    picture: np.ndarray, settings: Restoring, name: str, folder: Path
) -> tuple[np.ndarray, Path]:
    """Restore ``picture`` into ``folder/<name>-restored.png``, in the order ``predict``
    takes (the file is checked before the model's work) and with its writer."""
    path = folder / f"{Path(name).stem}-restored.png"
    check_writable(path, picture)
    restored = restore(picture, settings, name)
    write_image(path, restored)
    return restored, path
