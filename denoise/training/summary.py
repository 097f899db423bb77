"""What a run leaves for people and tools: ``summary.json`` and the closing test table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from denoise.files.atomic import atomic_file

SUMMARY_FILE = "summary.json"
TABLE_METRICS = (
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("mse", "MSE", "{:.6f}"),
)


class RunSummary:
    """A JSON file in the run folder, rewritten atomically as the run goes on, so that a
    sweep report can tell running, failed and completed jobs apart."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.path = Path(output_dir) / SUMMARY_FILE
        self.fields: dict[str, Any] = {}

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        with atomic_file(self.path, mode="w") as handle:
            json.dump(self.fields, handle, indent=2, default=str)


def read_summary(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The summary a run wrote, or None if it wrote none."""
    path = Path(output_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def format_test_table(metrics: dict[str, float], stage: str = "test") -> str:
    """Model against its noisy input, one row each: PSNR, SSIM and MSE."""
    header = f"{'':<14}" + "".join(f"{title:>10}" for _, title, _ in TABLE_METRICS)
    rows = [header]
    for label, prefix in (("noisy input", f"{stage}/noisy_"), ("denoised", f"{stage}/")):
        cells = [
            f"{fmt.format(metrics[prefix + key]):>10}" if prefix + key in metrics else f"{'-':>10}"
            for key, _, fmt in TABLE_METRICS
        ]
        rows.append(f"{label:<14}" + "".join(cells))
    return "\n".join(rows)
