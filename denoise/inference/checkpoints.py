"""Load a trained denoiser for inference, wherever its checkpoint was trained."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from denoise.models.module import DenoisingModule


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` takes the GPU when there is one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "blind-fer2013.ckpt"


def resolve_checkpoint(ckpt_path: str | os.PathLike | None) -> Path:
    """The checkpoint file to load: the one place that turns the setting into a file.
    No ``ckpt_path`` means the blind model shipped in the package."""
    if not ckpt_path:
        if not SHIPPED_WEIGHTS.is_file():
            raise FileNotFoundError(
                f"{SHIPPED_WEIGHTS}: the shipped weights are missing from this install; "
                "pass ckpt_path=outputs/runs/…/checkpoints/best.ckpt"
            )
        return SHIPPED_WEIGHTS
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def load_denoiser(ckpt_path: str | os.PathLike | None, device: str = "auto") -> DenoisingModule:
    """A checkpoint's model in eval mode (dropout off, BatchNorm on its running statistics);
    a file that is no checkpoint is named as such."""
    path = resolve_checkpoint(ckpt_path)
    try:
        model = DenoisingModule.load_from_checkpoint(path, map_location=pick_device(device))
    except (pickle.UnpicklingError, EOFError, KeyError, OSError, RuntimeError) as error:
        raise ValueError(
            f"{path}: not a denoise checkpoint ({type(error).__name__}: {error})"
        ) from error
    return model.eval()
