"""Line plots of metrics, written as PNG files (matplotlib without a display)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

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
