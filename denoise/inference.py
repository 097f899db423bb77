"""Load a trained denoiser for inference, wherever its checkpoint was trained."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from denoise.module import DenoisingModule


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` takes the GPU when there is one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_denoiser(ckpt_path: str | os.PathLike, device: str = "auto") -> DenoisingModule:
    """A checkpoint's model in eval mode (dropout off, BatchNorm on its running statistics)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    model = DenoisingModule.load_from_checkpoint(path, map_location=pick_device(device))
    return model.eval()
