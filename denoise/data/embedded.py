"""The embedded default data: a FER-style CSV cut from the natural images scikit-image ships.

Nothing is downloaded: the images are inside the scikit-image wheel. The CSV is built
once, deterministically, into the cache folder, and then read by the same loader as any
user CSV. Each split comes from different source pictures, so validation and test
measure how the denoiser does on pictures it never saw.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from skimage import color, data, transform

from denoise.files.atomic import atomic_file

log = logging.getLogger(__name__)

EMBEDDED_VERSION = 1
SPLIT_SOURCES = {
    "Training": (
        "astronaut", "brick", "cat", "cell", "clock", "coins", "grass", "gravel",
        "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
    ),
    "PrivateTest": ("chelsea", "microaneurysms", "colorwheel"),
    "PublicTest": ("camera", "coffee"),
}  # fmt: skip
SPLIT_SIZES = {"Training": 2000, "PrivateTest": 200, "PublicTest": 200}
SCALES = (1.0, 0.5, 0.25)  # coarser scales give face-sized structures in a 48x48 crop
EMOTION_PLACEHOLDER = 6  # FER's "neutral"; the denoiser does not use emotion


def embedded_csv_path(cache_dir: str | os.PathLike, size: int = 48) -> Path:
    """Build the embedded CSV into ``cache_dir`` on first use and return its path."""
    path = Path(cache_dir).expanduser() / "embedded" / f"skimage-{size}px-v{EMBEDDED_VERSION}.csv"
    if not path.exists():
        log.info("Building the embedded default data from scikit-image's images into %s", path)
        with atomic_file(path, mode="w", replace=False) as handle:  # two runs: one file
            build_embedded_frame(size).to_csv(handle, index=False)
    return path


def build_embedded_frame(size: int = 48, seed: int = 0) -> pd.DataFrame:
    """Random ``size``x``size`` grayscale crops at several scales, split by source picture."""
    rng = np.random.default_rng(seed)
    rows = []
    for usage, names in SPLIT_SOURCES.items():
        pyramids = [_pyramid(_grayscale(name), size) for name in names]
        for index in range(SPLIT_SIZES[usage]):
            levels = pyramids[index % len(pyramids)]
            level = levels[rng.integers(len(levels))]
            top = rng.integers(level.shape[0] - size + 1)
            left = rng.integers(level.shape[1] - size + 1)
            crop = level[top : top + size, left : left + size]
            rows.append((EMOTION_PLACEHOLDER, " ".join(map(str, crop.ravel())), usage))
    return pd.DataFrame(rows, columns=["emotion", "pixels", "Usage"])


def _grayscale(name: str) -> np.ndarray:
    image = getattr(data, name)()
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    return np.asarray(image, dtype=np.float64) / (255.0 if image.dtype == np.uint8 else 1.0)


def _pyramid(image: np.ndarray, size: int) -> list[np.ndarray]:
    levels = []
    for scale in SCALES:
        level = transform.rescale(image, scale, anti_aliasing=scale < 1) if scale != 1 else image
        if min(level.shape) >= size:
            levels.append(np.clip(np.rint(level * 255), 0, 255).astype(np.uint8))
    return levels
