"""Line plots of metrics, written as PNG files (matplotlib without a display)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib
from torch import Tensor

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display is needed

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]  # label -> (x values, y values)


def line_panels(
    panels: Sequence[tuple[str, Series]],
    xlabel: str,
    path: str | os.PathLike,
    title: str | None = None,
) -> None:
    """One panel per ``(ylabel, series)`` side by side, one marked line per series label."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for axis, (ylabel, series) in zip(axes[0], panels, strict=True):
        for label, (xs, ys) in series.items():
            axis.plot(xs, ys, marker="o", label=label)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def image_rows(
    blocks: Sequence[tuple[str, Sequence[Tensor], Sequence[str]]],
    path: str | os.PathLike,
    cell_inches: float = 1.3,
) -> None:
    """A grid of images: each block is ``(label, columns, titles)`` where ``columns`` are
    batches (N×C×H×W in [0, 1]) shown side by side; each of the N images gets a row."""
    rows = [
        (label, index, columns, titles)
        for label, columns, titles in blocks
        for index in range(len(columns[0]))
    ]
    width = max(len(columns) for _, columns, _ in blocks)
    figure, axes = plt.subplots(
        len(rows), width, figsize=(cell_inches * width, cell_inches * len(rows)), squeeze=False
    )
    for row, (label, index, columns, titles) in enumerate(rows):
        for column, (images, title) in enumerate(zip(columns, titles, strict=True)):
            axis = axes[row][column]
            image = images[index].detach().float().cpu().clamp(0, 1)
            axis.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            if index == 0:
                axis.set_title(title, fontsize="small")
            if column == 0:
                axis.set_ylabel(label, fontsize="small")
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
