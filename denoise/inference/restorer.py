"""Restore pictures of any size and colour layout with the right model and settings: what
``predict`` does to each file, and what code of your own can call.

A shipped model (``weights=natural``) restores a colour picture with its colour model, which
sees the three channels together, and a grey picture with its grey model; an RGB picture whose
three channels are equal is grey. A checkpoint of your own restores every picture (a grey one
restores each channel of a colour picture on its own). Models load on first use and stay
loaded, so a folder of pictures loads each at most once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from denoise import CONFIG_MODULE
from denoise.files.images import image_to_tensor, tensor_to_image
from denoise.inference.checkpoints import (
    checkpoint_file,
    inference_precision,
    load_denoiser,
    pick_device,
    resolve_checkpoint,
)
from denoise.inference.engines import ENGINES, ONNXRUNTIME, onnx_denoiser
from denoise.inference.shipped import ShippedModel, shipped_model
from denoise.inference.tiling import (
    TILING_KEYS,
    check_tiling_memory,
    denoise_image,
    describe_tiling,
    model_tiling,
    network_passes,
)
from denoise.models.denoiser import Restorer
from denoise.models.self_ensemble import check_view_count, self_ensemble
from denoise.runtime.errors import SettingError, UserError

log = logging.getLogger(__name__)

RESTORING_KEYS = ("weights", "device", "precision", "self_ensemble", "engine", "cache_dir")


def predict_defaults() -> dict[str, Any]:
    """The restoring settings' defaults as ``conf/predict.yaml`` sets them: their one owner, so
    that ``predict`` and the Python API (:mod:`denoise.inference.api`) restore alike. Read
    without Hydra; ``cache_dir``'s ``${oc.env:…}`` resolved now."""
    with files(CONFIG_MODULE).joinpath("predict.yaml").open() as handle:
        conf = OmegaConf.load(handle)
    return {key: conf[key] for key in (*RESTORING_KEYS, *TILING_KEYS)}


DEFAULTS = predict_defaults()


def is_grey(planes: torch.Tensor) -> bool:
    """One plane, or colour planes that are all equal (a grey picture saved as RGB)."""
    return all(torch.equal(planes[0], plane) for plane in planes[1:])


@dataclass
class PictureRestorer:
    """Restores pictures as ``predict`` does. ``ckpt_path`` wins over ``weights`` (a shipped
    model's name); ``self_ensemble`` and the tiling keys left as None take the model's own.
    ``engine``: ``torch``, or ``onnxruntime`` (fp32; each checkpoint converted once into
    ``cache_dir``)."""

    ckpt_path: str | Path | None = None
    weights: str = DEFAULTS["weights"]
    device: str = DEFAULTS["device"]
    precision: str = DEFAULTS["precision"]
    self_ensemble: int | None = DEFAULTS["self_ensemble"]
    tiling: dict[str, int | None] = field(
        default_factory=lambda: {key: DEFAULTS[key] for key in TILING_KEYS}
    )
    engine: str = DEFAULTS["engine"]
    cache_dir: str | Path = DEFAULTS["cache_dir"]
    shipped: ShippedModel | None = field(init=False)
    _models: dict[Path, Restorer] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        """Every setting checked before any work, whoever passed it (``predict``'s checks
        name its keys first; code of your own gets these)."""
        inference_precision(self.precision, pick_device(self.device))
        if self.self_ensemble is not None:
            check_view_count(self.self_ensemble, "self_ensemble")
        if self.engine not in ENGINES:
            raise SettingError(f"engine={self.engine}: must be one of {', '.join(ENGINES)}")
        gpu = self.device not in ("auto", "cpu")
        if self.engine == ONNXRUNTIME and (self.precision == "bf16" or gpu):
            setting = f"device={self.device}" if gpu else "precision=bf16"
            raise SettingError(
                f"{setting}: engine=onnxruntime runs in fp32 on the CPU",
                fix="use engine=torch for bf16 or a GPU",
            )
        self.shipped = None if self.ckpt_path else shipped_model(self.weights)
        self.path = resolve_checkpoint(self.ckpt_path, self.weights)  # refused before any work

    @property
    def name(self) -> str:
        """What restores the pictures, for the log."""
        if self.shipped is None:
            return str(self.path)
        files = self.path.name
        if self.shipped.colour is not None:
            files = f"{files} for grey pictures, {self.shipped.colour.name} for colour ones"
        return f"the shipped {self.shipped.name} model ({files})"

    def model_path(self, grey: bool) -> Path:
        """The checkpoint for a grey or a colour picture."""
        if grey or self.shipped is None or self.shipped.colour is None:
            return self.path
        return checkpoint_file(self.shipped.colour)

    def model(self, grey: bool) -> Restorer:
        """The model for a grey or a colour picture, loaded on first use, in one view (each
        picture wraps it in its own: :meth:`restore`)."""
        path = self.model_path(grey)
        if path not in self._models:
            if self._models:
                log.info(f"Loading {path.name} for {'grey' if grey else 'colour'} pictures")
            if self.engine == ONNXRUNTIME:
                model = onnx_denoiser(path, 1, self.cache_dir)
            else:
                model = load_denoiser(path, self.device, self.precision)
            log.info(describe_tiling(model, self.model_tiling(model)))
            self._models[path] = model
        return self._models[path]

    def views(self, pixels: int, passes: int = 1) -> int:
        """``self_ensemble`` as set; else the shipped model's choice for a picture of
        ``pixels`` that the network passes over ``passes`` times; else one pass (a
        checkpoint's training orientations are unknown)."""
        if self.self_ensemble is not None:
            return self.self_ensemble
        return self.shipped.views_for(pixels, passes) if self.shipped else 1

    def views_note(self, pixels: int, passes: int = 1) -> str | None:
        """One line when the size policy gave a picture fewer views than the model's own
        best: what was chosen, and how to ask for the best quality."""
        views = self.views(pixels, passes)
        if self.self_ensemble is not None or self.shipped is None or views >= self.shipped.views:
            return None
        best, budget = self.shipped.views, self.shipped.view_megapixels
        kind = "grey" if passes == 1 else "colour"
        return (
            f"{views} view{'s' if views > 1 else ''} (self_ensemble) for this "
            f"{pixels / 1e6:.1f}-megapixel {kind} picture: views are spent where they pay (all "
            f"{best} up to {budget / best / passes:.2f} MP for {kind} pictures); "
            f"self_ensemble={best} gives the best quality in about {best // views}x the time"
        )

    def model_tiling(self, model: Restorer) -> dict[str, int]:
        """Each tiling key as set, or the shipped model's own, or the design's."""
        return model_tiling(model, self.tiling, self.shipped.tiling if self.shipped else None)

    def check(self, path: Path, array: np.ndarray, error: type[UserError] = UserError) -> None:
        """Refuse, before any work, a picture whose tiles or planes would not fit memory."""
        model = self.model(grey=array.ndim == 2 or array.shape[-1] < 3)
        check_tiling_memory(path, model, array.shape, **self.model_tiling(model), error=error)

    def restore(self, array: np.ndarray) -> np.ndarray:
        """The restored picture, in the size, layout and pixel type of ``array``."""
        planes, alpha = image_to_tensor(array)
        grey = is_grey(planes)
        picture = planes[:1] if grey else planes
        model = self.model(grey)
        pixels, passes = picture[0].numel(), network_passes(model, len(picture))
        note = self.views_note(pixels, passes)
        if note:
            log.info(note)
        viewed = self_ensemble(model, self.views(pixels, passes))
        restored = denoise_image(viewed, picture, **self.model_tiling(model))
        return tensor_to_image(restored.expand_as(planes), array.dtype, alpha)
