"""The models shipped inside the package, by name: ``weights=faces`` or ``weights=natural``.

Each name holds its weights file, its model card beside it, the tiling that suits it, which
``predict`` uses when that model is chosen and ``tile_size``/``overlap``/``batch_size`` are null
(a checkpoint of your own gets :func:`denoise.inference.tiling.default_tiling`), and the
orientations it is averaged over when ``self_ensemble`` is null (a checkpoint of your own: one
pass; :mod:`denoise.models.self_ensemble` says why the two differ).
``evaluate`` picks one by its data when ``weights=auto`` (:func:`weights_for_data`). Turning a
name into a file, and refusing one missing from the install, is
:func:`denoise.inference.checkpoints.resolve_checkpoint`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from omegaconf import DictConfig

from denoise.data.settings import FER_TARGET, FOLDER_TARGET
from denoise.inference.tiling import CORRUPTION_AWARE_TILING, NATURAL_TILING
from denoise.models.self_ensemble import VIEW_COUNTS, check_view_count
from denoise.runtime.errors import SettingError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
FACES = "faces"
NATURAL = "natural"
AUTO = "auto"


@dataclass(frozen=True)
class ShippedModel:
    """A model in ``denoise/weights/``: its file, its own tiling and self-ensemble views, and
    for pictures in colour, where it has one, a model that restores the three channels
    together (``colour``). ``view_megapixels`` spends views where they pay: an image gets
    the most views (up to ``views``) whose count times the megapixels the network runs over
    (its pixels times the network's passes: 3 for a colour picture restored channel by
    channel) stays within it, and one pass at least; null gives every image ``views``."""

    name: str
    weights: Path
    tiling: Mapping[str, int]
    views: int
    colour: Path | None = None
    view_megapixels: float | None = None

    @property
    def card(self) -> Path:
        """The model card ``denoise.export`` writes beside the weights."""
        return self.weights.with_suffix(".md")

    def views_for(self, pixels: int, passes: int = 1) -> int:
        """The views an image of ``pixels`` gets when ``self_ensemble`` is null, where the
        network makes ``passes`` over each pixel."""
        if self.view_megapixels is None:
            return self.views
        budget = self.view_megapixels * 1e6
        fitting = [count for count in VIEW_COUNTS if count * pixels * passes <= budget]
        return min(self.views, max(fitting, default=1))


# Grey: 8 views up to a quarter of a megapixel, 4 to half, 2 to one, one pass above; colour
# (four passes: three channels and the luminance stage): 8 up to 0.06 MP, 4 to 0.12, 2 to 0.25
# (README, Speed).
NATURAL_VIEW_MEGAPIXELS = 2.0

SHIPPED_MODELS: dict[str, ShippedModel] = {
    FACES: ShippedModel(
        FACES,
        WEIGHTS_DIR / "blind-fer2013.ckpt",  # FER2013's 48x48 faces: experiment=faces
        MappingProxyType(CORRUPTION_AWARE_TILING),
        2,  # as given and mirrored: it learned upright faces
    ),
    NATURAL: ShippedModel(
        NATURAL,
        WEIGHTS_DIR / "blind-natural.ckpt",  # the six stages of experiment=natural
        MappingProxyType(NATURAL_TILING),
        8,  # every orientation: it learned crops flipped and turned
        WEIGHTS_DIR / "blind-natural-colour.ckpt",  # experiment=natural_colour
        NATURAL_VIEW_MEGAPIXELS,
    ),
}
SHIPPED_NAMES = tuple(SHIPPED_MODELS)

# The shipped model that suits each data source (conf/data/*.yaml, told apart by _target_).
DATA_WEIGHTS = {FER_TARGET: FACES, FOLDER_TARGET: NATURAL}


def shipped_model(name: str) -> ShippedModel:
    """The registry entry of ``name``; an unknown name is the one-line setting error."""
    if name not in SHIPPED_MODELS:
        raise SettingError(f"weights={name}: must be one of {', '.join(SHIPPED_MODELS)}")
    return SHIPPED_MODELS[name]


def check_self_ensemble(cfg: DictConfig) -> int | None:
    """``self_ensemble``: null (the model's own) or a count of views (:func:`check_view_count`,
    the one check); else the one-line error."""
    views = cfg.get("self_ensemble")
    return None if views is None else check_view_count(views, "self_ensemble")


def model_views(setting: int | None, shipped: str | None) -> int:
    """``self_ensemble`` as set, or where null the shipped model's own views (``shipped``: its
    name), or one pass for a checkpoint of your own (its training orientations are unknown)."""
    if setting is not None:
        return setting
    return shipped_model(shipped).views if shipped else 1


def weights_for_data(data: Mapping[str, Any]) -> str:
    """``weights=auto``: the face model for FER-style data (``data=fer``: a CSV or the
    embedded default), the natural-image model for ``data=folder``. Only ``_target_`` is read,
    so a folder config whose ``train_dir`` is still missing can be asked too."""
    target = data.get("_target_")
    if target not in DATA_WEIGHTS:
        raise SettingError(
            f"weights=auto: no shipped model is chosen for data of type {target}",
            fix=f"pass weights={' or weights='.join(SHIPPED_MODELS)}, or ckpt_path=…",
        )
    return DATA_WEIGHTS[target]


def pick_weights(weights: str, data: Mapping[str, Any]) -> str:
    """The shipped model's name: ``weights`` itself, or for ``auto`` the one that suits
    ``data``."""
    return weights_for_data(data) if weights == AUTO else shipped_model(weights).name
