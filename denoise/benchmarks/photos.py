"""What a person waits for with photos: the shipped natural model restoring grey and colour
photos as ``predict`` restores them (each engine, precision and count of views, and where
each differs from torch fp32), and ``python -m denoise.predict`` on whole photo files, from
launch to exit."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from skimage import data

from denoise.benchmarks.inference import why
from denoise.benchmarks.launch import run_child
from denoise.benchmarks.table import Row
from denoise.benchmarks.targets import Targets, stated, within
from denoise.benchmarks.timing import seconds_per_call
from denoise.data.noise import add_salt_and_pepper
from denoise.files.images import tensor_to_image
from denoise.inference.checkpoints import pick_device
from denoise.inference.engines import ONNXRUNTIME
from denoise.inference.restorer import PictureRestorer
from denoise.inference.shipped import NATURAL
from denoise.inference.tiling import network_passes

GREY, COLOUR = "grey", "colour"
PHOTO_KINDS = (GREY, COLOUR)
PHOTO_NOISE = 0.5


def clean_photo(megapixels: float, kind: str = GREY) -> torch.Tensor:
    """A ``(C, H, W)`` photo in [0, 1], square, of about ``megapixels``: scikit-image's
    camera (grey) or astronaut (colour), resized."""
    side = round(math.sqrt(megapixels * 1e6))
    picture = data.camera()[..., None] if kind == GREY else data.astronaut()
    planes = torch.from_numpy(picture.astype(np.float32) / 255).permute(2, 0, 1)[None]
    photo = F.interpolate(planes, size=(side, side), mode="bilinear", align_corners=False)
    return photo[0].clamp(0, 1)


def noisy_photo(megapixels: float, density: float = PHOTO_NOISE, kind: str = GREY) -> torch.Tensor:
    """:func:`clean_photo` under salt-and-pepper (seeded), drawn for each channel on its
    own, as published colour results draw it."""
    generator = torch.Generator().manual_seed(0)
    clean = clean_photo(megapixels, kind)[None]
    return add_salt_and_pepper(clean, density, generator=generator)[0]


def saved_photo(photo: torch.Tensor, path: Path) -> Path:
    """``photo`` written as an 8-bit image file, as a person would give it to predict."""
    Image.fromarray(tensor_to_image(photo, np.uint8)).save(path)
    return path


def photo_label(photo: torch.Tensor, kind: str) -> str:
    return f"{photo.shape[-1]}×{photo.shape[-2]} {kind} photo at {PHOTO_NOISE:.0%} noise"


def chosen_views(restorer: PictureRestorer, photo: torch.Tensor) -> int:
    """The views ``restorer`` gives ``photo`` (grey, or colour with channels that differ),
    by the rule its ``restore`` follows: the picture's pixels and the network's passes."""
    model = restorer.model(grey=len(photo) == 1)
    return restorer.views(photo[0].numel(), network_passes(model, len(photo)))


def photo_rows(cfg: DictConfig, seconds: float, targets: Targets) -> list[Row]:
    """The shipped natural model restoring a grey and a colour photo as ``predict`` does,
    in each engine, precision and count of views."""
    photos = cfg.photos
    engines, precisions = list(photos.engines), list(cfg.precisions)
    ways = [(e, p) for e in engines for p in precisions if e == "torch" or p == "fp32"]
    with tempfile.TemporaryDirectory() as cache:  # ONNX Runtime's conversions
        restorers = {
            (engine, precision): PictureRestorer(
                weights=NATURAL, precision=precision, engine=engine, cache_dir=cache
            )
            for engine, precision in ways
        }
        rows = []
        for kind in PHOTO_KINDS:
            photo = noisy_photo(float(photos.megapixels), kind=kind)
            clean = clean_photo(float(photos.megapixels), kind)
            rows += photo_speed_rows(
                photo, clean, kind, restorers, list(photos.views), seconds, targets
            )
    return rows


def photo_speed_rows(
    photo: torch.Tensor,
    clean: torch.Tensor,
    kind: str,
    restorers: dict[tuple[str, str], PictureRestorer],
    views: list[int],
    seconds: float,
    targets: Targets,
) -> list[Row]:
    """Seconds per megapixel of each restorer (engine, precision) on ``photo`` with each
    count of ``views`` and with its own policy (self_ensemble=None), as a ratio to torch fp32
    with one view; and where each differs from torch fp32 at its own views, with the PSNR
    of each to ``clean`` (bf16 may cost quality; ONNX Runtime should cost none)."""
    array = tensor_to_image(photo, np.uint8)
    pixels = photo.shape[-2] * photo.shape[-1]
    shown = photo_label(photo, kind)
    timings: dict[tuple[str, str, int], float] = {}
    outputs: dict[tuple[str, str, int], np.ndarray] = {}
    timed: list[tuple[Row, tuple[str, str, int] | None]] = []
    own: dict[tuple[str, str], int] = {}  # the views each way takes by itself
    for (engine, precision), restorer in restorers.items():
        device = "" if engine == ONNXRUNTIME else f" on {pick_device(restorer.device)}"
        label = f"natural model, {engine} {precision}{device}"
        try:
            restorer.model(grey=kind == GREY)  # loaded (converted) before any timing
        except Exception as error:
            if engine != ONNXRUNTIME:
                raise
            row = Row("photos", f"{label}, {shown}", math.nan, "s per megapixel", why(error))
            timed.append((row, None))
            continue
        warm_up = True  # once per model: its first call loads what the others reuse
        for chosen in [*views, None]:
            restorer.self_ensemble = chosen
            key = (engine, precision, chosen_views(restorer, photo))

            def restore(restorer: PictureRestorer = restorer, key: tuple = key) -> None:
                outputs[key] = restorer.restore(array)

            if key not in timings:
                spent = seconds_per_call(restore, seconds, min_calls=1, warm_up=warm_up)
                timings[key], warm_up = spent * 1e6 / pixels, False
            how = f"self_ensemble={chosen}"
            if chosen is None:
                own[engine, precision] = key[2]
                how = f"its own views ({key[2]} for {pixels / 1e6:.2g} MP)"
            row = Row("photos", f"{label}, {how}, {shown}", timings[key], "s per megapixel")
            timed.append((row, key))
    reference = timings.get(("torch", "fp32", 1))
    for row, key in timed:
        if reference is not None and key is not None and key != ("torch", "fp32", 1):
            row.ratio = f"{row.value / reference:.2f}× torch fp32, 1 view"
            if key[:2] == ("torch", "fp32"):
                limit = stated("≤", targets.view_overhead * key[2], "×")
                row.target = f"{limit} (a pass per view, then their mean)"
    rows = [row for row, _ in timed]
    rows += difference_rows(outputs, own, clean, shown)
    return rows


def difference_rows(
    outputs: dict[tuple[str, str, int], np.ndarray],
    own: dict[tuple[str, str], int],
    clean: torch.Tensor,
    shown: str,
) -> list[Row]:
    """Each way's (engine, precision) largest difference to torch fp32 on the same photo at
    its ``own`` views, in 8-bit levels (what predict writes), with the PSNR of both to the
    clean photo."""
    expected = tensor_to_image(clean, np.uint8)
    rows = []
    for (engine, precision), count in own.items():
        mine = outputs[engine, precision, count]
        reference = outputs.get(("torch", "fp32", count))
        if (engine, precision) == ("torch", "fp32") or reference is None:
            continue
        largest = int(np.abs(mine.astype(np.int16) - reference.astype(np.int16)).max())
        what = (
            f"natural model, {engine} {precision} against torch fp32, its own views "
            f"({count}), {shown}: largest difference"
        )
        psnr = f"PSNR to the clean photo {_psnr(mine, expected):.2f} dB (torch fp32: "
        psnr += f"{_psnr(reference, expected):.2f} dB)"
        rows.append(Row("photos", what, largest, "levels of 255", psnr))
    return rows


def _psnr(restored: np.ndarray, clean: np.ndarray) -> float:
    error = np.mean((restored.astype(np.float64) - clean.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / error) if error else math.inf


def whole_photo_rows(sizes: list[float], kinds: list[str], targets: Targets) -> list[Row]:
    """What a person waits for: ``python -m denoise.predict`` with its default settings on
    a noisy photo file of each size and kind, from launch to exit, with its peak memory."""
    if not sizes:
        return []
    rows, restorer = [], PictureRestorer(weights=NATURAL)  # says which views predict takes
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            for size in sizes:
                photo = noisy_photo(size, kind=kind)
                source = saved_photo(photo, Path(folder) / f"{kind}-{size:g}mp.png")
                target = Path(folder) / "restored.png"
                run = run_child("denoise.predict", [f"input={source}", f"output={target}"])
                what = (
                    f"predict, default settings, launch to exit: {photo_label(photo, kind)} "
                    f"({photo[0].numel() / 1e6:.3g} MP; its own views: "
                    f"{chosen_views(restorer, photo)})"
                )
                value = math.nan if run.failure else run.seconds
                note = run.failure or f"peak RSS {run.peak_gib:.2f} GiB"
                limit = targets.photo_wait(size)
                target = "" if limit is None else within(value, limit, "s")
                rows.append(Row("photos", what, value, "s", note, target))
    return rows
