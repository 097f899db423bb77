"""Read checkpoints safely and load a trained denoiser, wherever its checkpoint was trained.

Every checkpoint any command reads goes through :func:`read_checkpoint`: ``torch.load`` with
``weights_only=True``, so a crafted pickle is refused instead of run, and a file that is not a
checkpoint of this project is named as such in one line.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from denoise.files.reading import regular_file
from denoise.inference.shipped import FACES, SHIPPED_MODELS, shipped_model
from denoise.models.denoiser import Autocast, Denoiser, Restorer
from denoise.models.networks import Design, network_name
from denoise.models.self_ensemble import self_ensemble
from denoise.runtime.errors import SettingError, UserError
from denoise.runtime.machine import bf16_is_fast

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
# The face model: what "the shipped blind model" meant before there were several
# (init_from=shipped, bench); every shipped model is in denoise/inference/shipped.py.
SHIPPED_WEIGHTS = SHIPPED_MODELS[FACES].weights
REQUIRED_KEYS = ("state_dict", "hyper_parameters")
DEVICE_TYPES = ("cpu", "cuda")


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is missing, unreadable, unsafe or of another model (a ValueError
    for code that named it: the Python API)."""


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` takes the GPU when there is one; ``cpu``, ``cuda`` and ``cuda:N`` must exist
    here. Commands call it with their settings checks: a missing GPU is one line before any
    work, not an assertion from deep inside torch once the model is built."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        chosen = None
    if chosen is None or chosen.type not in DEVICE_TYPES:
        raise SettingError(f"device={device}: must be auto, cpu, cuda or cuda:N")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SettingError(
                f"device={device}: this machine has no CUDA GPU; "
                "use device=cpu (or leave device unset)"
            )
        if chosen.index is not None and chosen.index >= count:
            raise SettingError(
                f"device={device}: this machine has {count} CUDA GPU{'s' if count > 1 else ''} "
                f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})"
            )
    return chosen


def resolve_checkpoint(ckpt_path: str | os.PathLike | None, weights: str = FACES) -> Path:
    """The checkpoint file to load: the one place that turns the settings into a file.
    An explicit ``ckpt_path`` wins; without one, the shipped model named ``weights``."""
    if not ckpt_path:
        return shipped_weights(weights)
    return checkpoint_file(Path(ckpt_path).expanduser())


def named_checkpoint(value: str, key: str) -> Path:
    """The file of a setting that takes a shipped model's name or a checkpoint (``init_from``,
    ``evaluate``'s ``peers``; ``key`` names it in the fix). A shipped name wins over a file of
    that name in the current folder, so that a name means the same wherever the command runs;
    ``./natural`` names the file."""
    if value in SHIPPED_MODELS:
        return shipped_weights(value, path_key=key, name_key=key)
    return resolve_checkpoint(value)


def checkpoint_file(path: Path) -> Path:
    """``path`` if it is a checkpoint file to read: not missing, a folder, a FIFO or a
    device (:func:`regular_file`)."""
    return regular_file(
        path,
        CheckpointError,
        missing="no such checkpoint",
        folder="is a folder; ckpt_path takes a .ckpt file",
    )


def shipped_weights(name: str, path_key: str = "ckpt_path", name_key: str = "weights") -> Path:
    """The weights file of the shipped model ``name``, which must be in this install (a model
    can be registered before its file ships). The fix names the command's own keys: the one
    taking a checkpoint file, and the one taking a shipped model's name."""
    model = shipped_model(name)
    if not model.weights.is_file():
        others = "".join(
            f", or {name_key}={other}"
            for other, entry in SHIPPED_MODELS.items()
            if other != name and entry.weights.is_file()
        )
        raise CheckpointError(
            f"{model.weights}: the shipped {name} weights are missing from this install",
            fix=f"pass {path_key}=outputs/runs/…/checkpoints/best.ckpt{others}",
        )
    return model.weights


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The contents of a checkpoint this project wrote, loaded without running any code."""
    path = checkpoint_file(Path(path))
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a denoise checkpoint (the file is empty)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = (
            "it holds Python objects beyond weights, which are never loaded: they could run code"
            if "GLOBAL" in str(error)
            else "not a file that torch.save writes"
        )
        raise CheckpointError(f"{path}: not a denoise checkpoint ({reason})") from None
    except Exception as error:  # an untrusted file: its decoder may fail in any way
        reason = (
            f"{type(error).__name__}: {_first_line(error)}"
            if _looks_like_torch_file(path)
            else "not a file that torch.save writes"
        )
        raise CheckpointError(f"{path}: not a denoise checkpoint ({reason})") from None
    missing = [
        key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint
    ]
    if missing:
        raise CheckpointError(f"{path}: not a denoise checkpoint (no {' and no '.join(missing)})")
    for key in REQUIRED_KEYS:
        if not isinstance(checkpoint[key], Mapping):
            kind = type(checkpoint[key]).__name__
            raise CheckpointError(
                f"{path}: not a denoise checkpoint (its {key} is a {kind}, not a mapping)"
            )
    check_finite(checkpoint["state_dict"], path)
    return checkpoint


def check_finite(state_dict: Mapping[str, Any], path: Path) -> None:
    """Refuse weights that hold NaN or infinity (a diverged training saves them without a
    word): the model would turn every picture black. One pass over each tensor."""
    for name, tensor in state_dict.items():
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            continue
        if bool(torch.isfinite(tensor).all()):
            continue
        what = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
        raise CheckpointError(
            f"{path}: not a usable checkpoint ({name} holds {what} values: the training diverged?)"
        )


def model_from_hyper_parameters(
    hyper_parameters: Mapping[str, Any], path: str | os.PathLike
) -> Denoiser:
    """The untrained model a checkpoint's hyperparameters describe (on the current default
    device: ``meta`` builds it without memory), as a plain :class:`Denoiser`: inference needs
    no Lightning. Hyperparameters of another project are a CheckpointError naming the
    checkpoint."""
    try:
        return Denoiser(Design.from_settings(hyper_parameters))
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"{path}: not a denoise checkpoint (its hyperparameters build no denoise model: "
            f"{_first_line(error)})"
        ) from None


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Denoiser:
    """The model a checkpoint describes, with its weights; a checkpoint of another project or
    of a mismatched model is a CheckpointError, not a state-dict traceback."""
    model = model_from_hyper_parameters(checkpoint["hyper_parameters"], path)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError, TypeError) as error:
        architecture = network_name(model.hparams.net)
        raise CheckpointError(
            f"{path}: its weights do not fit the {architecture} model its hyperparameters "
            f"describe ({_first_line(error)})"
        ) from None
    return model


def load_denoiser(
    ckpt_path: str | os.PathLike | None,
    device: str = "auto",
    precision: str = "fp32",
    weights: str = FACES,
    views: int = 1,
) -> Restorer:
    """A checkpoint's model (without ``ckpt_path``: the shipped model named ``weights``) in eval
    mode (dropout off, BatchNorm on its running statistics), denoising in ``precision``
    (``auto``: see :func:`inference_precision`; bf16 wraps it in :class:`Autocast`), averaged
    over ``views`` flips and rotations (:func:`~denoise.models.self_ensemble.self_ensemble`).
    In fp32 and one view it is the :class:`Denoiser` itself."""
    path = resolve_checkpoint(ckpt_path, weights)
    target = pick_device(device)
    model: Restorer = model_from_checkpoint(read_checkpoint(path), path).to(target).eval()
    chosen, why = inference_precision(precision, target)
    if chosen == "bf16":
        model = Autocast(model, torch.bfloat16)
    model = self_ensemble(model, views)
    log.info("Inference in %s: %s", chosen, why)
    if views > 1:
        log.info("Each image is restored in %d orientations, then averaged (self_ensemble)", views)
    return model


def inference_precision(setting: str, device: torch.device) -> tuple[str, str]:
    """``fp32`` or ``bf16``, and why. ``auto`` takes bf16 only where the hardware computes it
    (a GPU, or a CPU with AMX or AVX512-BF16); elsewhere bf16 is slower than fp32. (bf16
    changed the shipped model's PSNR on FER2013 PublicTest by at most 0.023 dB, but costs very
    clean, smooth images about 1.3 dB: the commands default to fp32.)"""
    if setting not in PRECISIONS:
        raise SettingError(f"precision={setting}: must be one of {', '.join(PRECISIONS)}")
    if setting != "auto":
        return setting, f"precision={setting}"
    fast, why = bf16_is_fast(device)
    return ("bf16" if fast else "fp32"), why


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, before torch 1.6, a pickle)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80"


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
