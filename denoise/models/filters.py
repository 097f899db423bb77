"""Classical salt-and-pepper baselines on batched image tensors ``(N, C, H, W)`` in [0, 1].

They give the U-Net something to beat. Every filter works per 2D channel, keeps the
shape, replicates edges (``scipy.ndimage`` ``mode="nearest"``) so borders are not darkened
by zero padding, and returns a new tensor. Work is split into chunks so that memory stays
bounded on whole datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from skimage.restoration import inpaint_biharmonic

from denoise.data.noise import candidate_mask

# At most this many window elements are gathered at once (about 64 MiB of float32 values
# plus 128 MiB of int64 indices), whatever the batch size.
GATHER_ELEMENTS = 1 << 24
# The adaptive filter pads and tracks image planes with about this many padded pixels at a
# time (about 300 planes of 48x48 at max_window 39). Larger chunks mean fewer small tensor
# operations, which helps when other processes share the CPU, but fit caches worse.
ADAPTIVE_PADDED_PIXELS = 1 << 21

Filter = Callable[[torch.Tensor], torch.Tensor]


def _check_odd(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum or value % 2 == 0:
        raise ValueError(f"{name} must be an odd integer >= {minimum}, got {value!r}")


def _per_plane_chunks(images: torch.Tensor, planes_per_chunk: int, fn: Filter) -> torch.Tensor:
    """Apply ``fn`` to chunks of single-channel planes ``(B, 1, H, W)`` so that channels
    never mix and peak memory scales with the chunk, not the batch."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    planes = images.reshape(-1, 1, *images.shape[-2:])
    if planes.shape[0] == 0:
        return images.clone()
    chunks = [fn(chunk) for chunk in planes.split(max(1, planes_per_chunk))]
    return torch.cat(chunks).reshape(images.shape)


def median_filter(images: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Plain ``size`` x ``size`` median: the textbook baseline, which also blurs clean pixels."""
    return _windowed_median(images, size)


def _windowed_median(images: torch.Tensor, size: int, ignore_nan: bool = False) -> torch.Tensor:
    """``size`` x ``size`` medians in chunks of planes that bound the gathered windows."""
    _check_odd("size", size, 1)
    height, width = images.shape[-2:]
    planes_per_chunk = GATHER_ELEMENTS // max(1, height * width * size * size)
    median = partial(_median_planes, size=size, ignore_nan=ignore_nan)
    return _per_plane_chunks(images, planes_per_chunk, median)


def _median_planes(planes: torch.Tensor, size: int, ignore_nan: bool = False) -> torch.Tensor:
    radius = size // 2
    padded = F.pad(planes, (radius,) * 4, mode="replicate")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # (B, 1, H, W, size, size)
    windows = windows.reshape(*planes.shape, size * size)
    if ignore_nan:  # the lower median of the values present; NaN where there are none
        return windows.nanmedian(dim=-1).values
    # An odd count has a single middle element, so torch's lower median is the exact one.
    return windows.median(dim=-1).values


def switching_median_filter(images: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Median only where a pixel is exactly 0 or 1 (detected noise), so clean pixels keep
    their detail instead of being blurred."""
    noise = candidate_mask(images).bool()
    return torch.where(noise, median_filter(images, size), images)


def clean_switching_median_filter(images: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Like :func:`switching_median_filter`, but the median is taken over the window's
    non-candidate pixels only, so neighbouring impulses do not vote (the plain median
    where a window has none)."""
    noise = candidate_mask(images).bool()
    clean_median = _windowed_median(torch.where(noise, torch.nan, images), size, ignore_nan=True)
    fallback = torch.isnan(clean_median)
    if fallback.any():
        clean_median = torch.where(fallback, median_filter(images, size), clean_median)
    return torch.where(noise, clean_median, images)


def biharmonic_inpainting(images: torch.Tensor) -> torch.Tensor:
    """Inpaint every black or white pixel from the others with scikit-image's biharmonic
    solver (a plane that is all candidates, or has none, is left as it is)."""
    noise = candidate_mask(images).bool()
    planes = images.reshape(-1, *images.shape[-2:]).cpu().double().numpy()
    masks = noise.reshape(planes.shape).cpu().numpy()
    output = planes.copy()
    for index, (plane, mask) in enumerate(zip(planes, masks, strict=True)):
        if mask.any() and not mask.all():
            output[index] = inpaint_biharmonic(plane, mask)
    restored = torch.from_numpy(np.clip(output, 0.0, 1.0)).to(images.dtype)
    return restored.reshape(images.shape).to(images.device)


def adaptive_median_filter(images: torch.Tensor, max_window: int = 7) -> torch.Tensor:
    """Adaptive median filter (Hwang & Haddad 1995; Gonzalez & Woods): grow the window until
    its median is not an extreme, so dense noise is still removed, and keep pixels that are
    not extremes of their window, so detail survives."""
    _check_odd("max_window", max_window, 3)
    padded_area = (images.shape[-2] + max_window - 1) * (images.shape[-1] + max_window - 1)
    fn = partial(_adaptive_planes, max_window=max_window)
    return _per_plane_chunks(images, ADAPTIVE_PADDED_PIXELS // padded_area, fn)


def _adaptive_planes(planes: torch.Tensor, max_window: int) -> torch.Tensor:
    """Resolve pixels window size by window size, carrying only the unresolved ones on."""
    windows = _Windows(planes, max_window // 2)
    values = planes.reshape(-1)
    output = values.clone()
    pending = torch.arange(values.numel(), device=planes.device)
    corners = windows.corners(pending)
    for size in range(3, max_window + 1, 2):
        passes, result = windows.step(corners, values[pending], size)
        resolved = passes if size < max_window else torch.ones_like(passes)
        output[pending[resolved]] = result[resolved]
        pending, corners = pending[~resolved], corners[:, ~resolved]
        if pending.numel() == 0:
            break
    return output.reshape(planes.shape)


class _Windows:
    """Square windows around the pixels of planes ``(B, 1, H, W)``, edges replicated.

    Medians are the expensive part, so where 0 or 1 fills at least half of a window its
    median is known from counts alone (summed-area tables, four lookups per pixel) and
    only the other windows are gathered. Under dense noise that is most windows: a pixel
    resolves only once its window holds enough clean values, and near the corners of an
    image, where edge replication repeats one pixel many times, often never.

    Pixels are addressed by ``corners``: row 0 indexes the top-left corner of a pixel's
    largest window in the flattened padded planes, the other rows the same corner in each
    flattened summed-area table.
    """

    def __init__(self, planes: torch.Tensor, radius: int) -> None:
        self.radius = radius
        self.height, self.width = planes.shape[-2:]
        padded = F.pad(planes, (radius,) * 4, mode="replicate")[:, 0]
        self.padded = padded.reshape(-1)
        self.padded_shape = padded.shape[-2:]
        # A value filling half a window is its median; 0 and 1 are then also its min or max
        # (level A fails) only if nothing lies outside [0, 1].
        in_range = bool(((planes >= 0.0) & (planes <= 1.0)).all())
        self.extremes = planes.new_tensor([0.0, 1.0] if in_range else [])
        tables = _summed_area(padded == self.extremes[:, None, None, None])
        self.tables = tables.reshape(-1)
        self.table_shape = tables.shape[-2:]
        self.table_numel = tables[0].numel() if len(tables) else 0

    def corners(self, pixels: torch.Tensor) -> torch.Tensor:
        """``corners`` for flat pixel indices into the planes."""
        plane = pixels // (self.height * self.width)
        row, col = pixels // self.width % self.height, pixels % self.width
        in_padded = _flat_index(self.padded_shape, plane, row, col)
        in_table = _flat_index(self.table_shape, plane, row, col)
        starts = torch.arange(len(self.extremes), device=pixels.device) * self.table_numel
        return torch.cat([in_padded[None], in_table + starts[:, None]])

    def step(
        self, corners: torch.Tensor, centre: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether level A passes at this window size for pixels with values ``centre``,
        and their output (level B if it passes, else the window median)."""
        offset = self.radius - size // 2
        table_corners = corners[1:] + offset * (self.table_shape[1] + 1)
        counts = _box_sum(self.tables, table_corners, size, self.table_shape[1])
        known = counts >= (size * size + 1) // 2  # at most one extreme per window
        result = (known * self.extremes[:, None]).sum(0, dtype=centre.dtype)
        unknown = ~known.any(0)
        passes = torch.zeros_like(unknown)
        window_corners = corners[0, unknown] + offset * (self.padded_shape[1] + 1)
        stats = self._gather(window_corners, size)
        passes[unknown], result[unknown] = _levels(stats, centre[unknown])
        return passes, result

    def _gather(
        self, window_corners: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Min, median and max of windows, a bounded number of windows at a time."""
        steps = torch.arange(size, device=window_corners.device)
        offsets = (steps[:, None] * self.padded_shape[1] + steps).reshape(-1)
        stats = []
        for part in window_corners.split(max(1, GATHER_ELEMENTS // offsets.numel())):
            windows = self.padded[part[:, None] + offsets]
            stats.append((windows.amin(-1), windows.median(-1).values, windows.amax(-1)))
        zmin, zmed, zmax = (torch.cat(column) for column in zip(*stats, strict=True))
        return zmin, zmed, zmax


def _flat_index(
    shape: torch.Size, plane: torch.Tensor, row: torch.Tensor, col: torch.Tensor
) -> torch.Tensor:
    return (plane * shape[0] + row) * shape[1] + col


def _levels(
    stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor], centre: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Level A (is the median an impulse?) and level B (is the pixel one?) of the filter."""
    zmin, zmed, zmax = stats
    passes = (zmin < zmed) & (zmed < zmax)
    keep = (zmin < centre) & (centre < zmax)
    return passes, torch.where(passes & keep, centre, zmed)


def _summed_area(mask: torch.Tensor) -> torch.Tensor:
    """Summed-area tables over the last two dimensions, with a leading row and column of 0."""
    table = mask.to(torch.int32).cumsum(-1, dtype=torch.int32).cumsum(-2, dtype=torch.int32)
    return F.pad(table, (1, 0, 1, 0))


def _box_sum(
    tables: torch.Tensor, corners: torch.Tensor, size: int, row_stride: int
) -> torch.Tensor:
    """Sums of the ``size`` x ``size`` boxes with the given top-left corners."""
    down = size * row_stride
    return (
        tables[corners + down + size]
        - tables[corners + down]
        - tables[corners + size]
        + tables[corners]
    )


def classical_filters(amf_max_window: int = 39) -> dict[str, Filter]:
    """The classical baselines by display name, with their settings bound."""
    return {
        "median 3x3": partial(median_filter, size=3),
        "adaptive median": partial(adaptive_median_filter, max_window=amf_max_window),
        "switching median 3x3": partial(switching_median_filter, size=3),
        "switching median 3x3, clean neighbours": partial(clean_switching_median_filter, size=3),
        "biharmonic inpainting": biharmonic_inpainting,
    }
