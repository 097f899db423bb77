"""Denoise one image of any size with bounded memory: overlapping tiles, each keeping its centre.

The U-Net is fully convolutional, so a large image can be cut into tiles that are denoised in
batches. Each tile carries ``overlap`` pixels of context on every side and only its centre is
kept, so tile borders (where the network sees zero padding instead of the neighbouring pixels)
never reach the result. Tile origins lie on the network's downsampling grid
(``size_multiple``), so every tile sees the same pixel grid as the whole image would.

Why the defaults (measured on the 8.6 M-parameter U-Net trained on FER2013, 512x512 image):
its output still moves when an input pixel 78 px away changes. With 32 px of overlap the
tiled result differed from the whole-image result by up to 0.12 (31 levels of 8 bits) near
tile seams; with 64 px by at most 4e-6, i.e. the same image. A 512 px tile with 64 px of
overlap keeps 384x384 of every 512x512 it computes (a 256 px tile would keep only 128x128),
and a batch of 4 such tiles takes the memory of 16 tiles of 256 px.

The corruption-aware model is different: trained on whole 48x48 images, it restores a large
image better cut into 48 px tiles than in one pass (scikit-image's 512x512 camera at 2%
noise, the shipped model: 43.4 dB whole, 46.5 dB in 48 px tiles without overlap, 46.6 with
8 px; at 50%: 32.0 to 32.1 dB either way; its first stage alone gave 28.7 dB whole against
46.8 in tiles). Its deep layers learned to use a whole face's context, borders included.
:func:`default_tiling` therefore gives it 48 px tiles without overlap (8 px of overlap cost
4x the time for 0.1 dB).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from denoise.models.denoiser import Restorer
from denoise.models.footprint import FLOAT_BYTES, inference_bytes
from denoise.models.networks import network_name
from denoise.runtime.errors import SettingError, UserError
from denoise.runtime.memory import check_fits, gigabytes

# The settings of a tiling: the values below are the one place their defaults are written.
TILING_KEYS = ("tile_size", "overlap", "batch_size")
# 4 reference tiles of 512 px take about 0.8 GB on the CPU; 256 tiles of 48 px far less.
REFERENCE_TILING = {"tile_size": 512, "overlap": 64, "batch_size": 4}
CORRUPTION_AWARE_TILING = {"tile_size": 48, "overlap": 0, "batch_size": 256}
# The shipped natural-image model (weights=natural), trained on 64 px crops. Measured on 8
# held-out train400 validation images (180 px) and 2 portraits (320-384 px), mean PSNR at
# 10/50/90/95%: 128 px tiles with 16 px of context 42.42/32.01/22.87/21.03 dB; one pass
# 40.60/30.98/22.85/21.03 (on the portraits alone 34.1 against 43.2 dB at 10%: it learned
# crop-sized context); 64 px tiles without context 42.15/31.76/22.77/20.82; 32 px of context
# no better (42.41/31.94/22.87/21.04) for 2x the time.
NATURAL_TILING = {"tile_size": 128, "overlap": 16, "batch_size": 32}
# A network of your own that declares no ``size_multiple``: tiles could cut it off its
# downsampling grid, so each picture is restored whole, in one pass.
WHOLE_PICTURE = 2**31 - 1
WHOLE_TILING = {"tile_size": WHOLE_PICTURE, "overlap": 0, "batch_size": 1}
# A progress bar over the tiles of an image that has at least this many, once it has taken
# this long (a 3-megapixel photo: about 1 min on 2 CPU cores with the natural model's 8 views).
PROGRESS_TILES = 64
PROGRESS_DELAY_S = 2.0
# The image as float planes: the model's input, the NaN-filled output, the result's copy.
IMAGE_COPIES = 3


def network_passes(model: Restorer, channels: int) -> int:
    """How many images the network restores for one of ``channels`` channels: each channel
    for a grey model and a cross-channel one (and one more for a colour picture with the
    luminance stage), the whole image at once otherwise."""
    net = model.hparams.net
    one_at_a_time = net["in_channels"] == 1 or net.get("cross_channel", False)
    if not one_at_a_time:
        return 1
    luminance = channels > 1 and bool(net.get("luminance_sigma", 0.0))
    return channels + int(luminance)


def size_multiple(model: Restorer) -> int | None:
    """The multiple of the picture's size the network works on (its downsampling factor) as
    the network declares it (``size_multiple``, as the project's U-Nets do); None where a
    network of your own declares none."""
    multiple = getattr(model.net, "size_multiple", None)
    return int(multiple) if isinstance(multiple, int) and multiple >= 1 else None


def default_tiling(model: Restorer) -> dict[str, int]:
    """``tile_size``, ``overlap`` and ``batch_size`` (tiles at once) that suit the model's
    architecture (see the module's notes); the whole picture at once for a network that
    declares no :func:`size_multiple`."""
    if network_name(model.hparams.net) == "corruption_aware":
        return dict(CORRUPTION_AWARE_TILING)
    if size_multiple(model) is None:
        return dict(WHOLE_TILING)
    return dict(REFERENCE_TILING)


def model_tiling(
    model: Restorer,
    chosen: Mapping[str, int | None] | None = None,
    own: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Each tiling key as ``chosen`` sets it, else the model's ``own`` (a shipped model's),
    else :func:`default_tiling`'s: the one rule ``predict`` and ``evaluate`` follow."""
    defaults = own if own is not None else default_tiling(model)
    tiling = {}
    for key in TILING_KEYS:
        value = (chosen or {}).get(key)
        tiling[key] = int(defaults[key] if value is None else value)
    return tiling


def describe_tiling(model: Restorer, tiling: Mapping[str, int]) -> str:
    """The tiling, in one line for the log."""
    whole = tiling["tile_size"] >= WHOLE_PICTURE
    if whole and size_multiple(model) is None:
        name = network_name(model.hparams.net)
        return (
            f"Each picture restored whole, in one pass: {name} declares no size_multiple "
            "(give the network a size_multiple attribute, or set tile_size, to cut tiles)"
        )
    if whole:
        return "Each picture restored whole, in one pass"
    return (
        f"Tiles of {tiling['tile_size']} px, {tiling['overlap']} px of overlap, "
        f"{tiling['batch_size']} at once"
    )


class Span(NamedTuple):
    """One tile along one axis: the window fed to the model and the part of it kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int

    @property
    def window(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def kept(self) -> slice:
        return slice(self.keep_start, self.keep_stop)

    @property
    def kept_in_window(self) -> slice:
        return slice(self.keep_start - self.start, self.keep_stop - self.start)


def tile_spans(size: int, tile_size: int, overlap: int, multiple: int = 1) -> list[Span]:
    """Cover ``size`` pixels with windows of at most ``tile_size`` whose kept centres partition
    the axis; a side that fits in ``tile_size`` is one window, kept whole."""
    if size <= tile_size:
        return [Span(0, size, 0, size)]
    margin = -(-overlap // multiple) * multiple  # overlap, rounded up onto the grid
    step = (tile_size - 2 * margin) // multiple * multiple
    if step <= 0:
        raise SettingError(
            f"tile_size {tile_size} leaves no centre to keep with overlap {overlap} on each "
            f"side (the model needs multiples of {multiple}); raise tile_size or lower overlap"
        )
    spans = []
    for keep_start in range(0, size, step):
        start = max(keep_start - margin, 0)
        stop = min(start + step + 2 * margin, size)
        spans.append(Span(start, stop, keep_start, min(keep_start + step, size)))
    return spans


def check_tiling_memory(
    path: Path,
    model: Restorer,
    image_shape: tuple[int, ...],
    tile_size: int,
    overlap: int,
    batch_size: int,
    error: type[UserError] = UserError,
) -> None:
    """Refuse, as ``error`` naming ``path``, an image of ``image_shape`` (H, W[, C]) whose
    tiles would not fit the model's device, or whose float planes would not fit the CPU's
    memory: ``tile_size=1000000`` makes a 40-megapixel photo one tile (some 20 GB of
    activations for the reference U-Net)."""
    height, width = image_shape[:2]
    channels = image_shape[2] if len(image_shape) > 2 else 1
    multiple = size_multiple(model) or 1
    rows = tile_spans(height, tile_size, overlap, multiple)
    columns = tile_spans(width, tile_size, overlap, multiple)
    tile_h = max(span.stop - span.start for span in rows)
    tile_w = max(span.stop - span.start for span in columns)
    images = network_passes(model, channels)
    batch = min(batch_size, images * len(rows) * len(columns))
    net = model.hparams.net
    if "base_channels" in net and "depth" in net:  # the project's U-Nets; unknown elsewhere
        activations = inference_bytes(net["base_channels"], net["depth"], tile_h, tile_w, batch)
        activations = activations * model.dtype.itemsize // FLOAT_BYTES
        subject = f"{path}: tile_size={tile_size}, batch_size={batch_size}"
        tiles = f"{batch} tile{'s' if batch != 1 else ''} of {tile_h}x{tile_w} px"
        check_fits(
            subject,
            activations,
            "denoising it",
            f"the network's activations for {tiles}",
            "use a smaller tile_size or batch_size",
            str(model.device),
            error,
        )
    planes = IMAGE_COPIES * FLOAT_BYTES * max(channels, net["in_channels"]) * height * width
    check_fits(
        str(path),
        planes,
        f"denoising this {width}x{height} image",
        f"{gigabytes(planes)} as float planes",
        "lower max_pixels to refuse such images from their header",
        "cpu",
        error,
    )


def denoise_image(
    model: Restorer,
    image: torch.Tensor,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """The restored ``(C, H, W)`` image in [0, 1], on the image's device; a tiling key left
    None is the model's own (:func:`default_tiling`).

    ``model`` must already be in eval mode; it runs on its own device. A 1-channel model
    denoises each channel of a colour image as a grayscale image; a 3-channel model gets a
    grayscale image repeated to 3 channels, and its 3 outputs are averaged.
    """
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}")
    chosen = {"tile_size": tile_size, "overlap": overlap, "batch_size": batch_size}
    tile_size, overlap, batch_size = model_tiling(model, chosen).values()
    if min(tile_size, batch_size) < 1 or overlap < 0:
        raise SettingError("tile_size and batch_size must be positive and overlap not negative")
    inputs = model_inputs(image[None], model.hparams.net["in_channels"])
    with torch.inference_mode():
        restored = denoise_tiles(model, inputs, tile_size, overlap, batch_size)
    return image_output(restored, image.shape[0])[0].to(image.device)


def model_inputs(images: torch.Tensor, in_channels: int) -> torch.Tensor:
    """The model's batch ``(M, in_channels, H, W)`` for images ``(N, C, H, W)``: a 1-channel
    model gets each channel of each image as a grey image (M = N·C), a 3-channel model gets
    a grey image repeated to 3 channels. ``predict`` and ``evaluate`` share this rule."""
    channels = images.shape[1]
    if channels == in_channels:
        return images
    if in_channels == 1:
        return images.reshape(-1, 1, *images.shape[2:])
    if in_channels == 3 and channels == 1:
        return images.expand(-1, 3, -1, -1)
    raise ValueError(
        f"the model takes {in_channels}-channel images and this image has {channels} channels"
    )


def image_output(restored: torch.Tensor, channels: int) -> torch.Tensor:
    """The inverse of :func:`model_inputs`: the model's ``(M, C_out, H, W)`` back to images
    ``(N, channels, H, W)``; a 3-channel model's outputs for a grey image are averaged."""
    restored_channels = restored.shape[1]
    if restored_channels == channels:
        return restored
    if restored_channels == 1:
        return restored.reshape(-1, channels, *restored.shape[2:])
    if channels == 1:
        return restored.mean(dim=1, keepdim=True)
    raise ValueError(
        f"the model returns {restored_channels} channels for a {channels}-channel image"
    )


def denoise_tiles(
    model: Restorer, inputs: torch.Tensor, tile_size: int, overlap: int, batch_size: int
) -> torch.Tensor:
    """Denoise every tile of every image in ``inputs`` (a batch the model takes as it is),
    batching tiles of equal shape."""
    count, _, height, width = inputs.shape
    multiple = size_multiple(model) or 1  # set tiles of a network without one: its own risk
    rows = tile_spans(height, tile_size, overlap, multiple)
    columns = tile_spans(width, tile_size, overlap, multiple)
    by_shape: dict[tuple[int, int], list[tuple[int, Span, Span]]] = defaultdict(list)
    for index in range(count):
        for row in rows:
            for column in columns:
                shape = (row.stop - row.start, column.stop - column.start)
                by_shape[shape].append((index, row, column))

    # NaN until written: a pixel that no tile covered could not pass for a result
    output = inputs.new_full(
        (count, model.hparams.net["out_channels"], height, width), float("nan")
    )
    total = sum(len(tiles) for tiles in by_shape.values())
    # a large photo takes minutes on a CPU (more with self_ensemble): show how far it is
    shown = {"disable": total < PROGRESS_TILES, "delay": PROGRESS_DELAY_S}
    with tqdm(total=total, desc="tiles", unit="tile", leave=False, **shown) as bar:
        for tiles in by_shape.values():
            for first in range(0, len(tiles), batch_size):
                chunk = tiles[first : first + batch_size]
                windows = torch.stack([inputs[i, :, r.window, c.window] for i, r, c in chunk])
                restored = model.denoise(windows.to(model.device, model.dtype)).to(output)
                for tile, (i, row, col) in zip(restored, chunk, strict=True):
                    kept = tile[:, row.kept_in_window, col.kept_in_window]
                    output[i, :, row.kept, col.kept] = kept
                bar.update(len(chunk))
    return output
