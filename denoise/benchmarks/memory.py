"""Peak resident memory of real runs, each in its own child process: a training run on the
CSV, and ``predict`` on photos of several sizes with how much it grows per megapixel."""

from __future__ import annotations

import tempfile
from pathlib import Path

from denoise.benchmarks.launch import peak_rss
from denoise.benchmarks.photos import noisy_photo, saved_photo
from denoise.benchmarks.table import Row
from denoise.benchmarks.targets import Targets, stated
from denoise.inference.shipped import NATURAL, shipped_model


def peak_training_rss(csv_path: str, batches: int) -> float:
    """Peak resident memory (GiB) of a real training run on ``csv_path``."""
    with tempfile.TemporaryDirectory() as folder:
        overrides = [
            f"data.csv_path={csv_path}", f"paths.log_dir={folder}", "trainer.max_epochs=1",
            f"trainer.limit_train_batches={batches}", "trainer.limit_val_batches=5",
            "trainer.limit_test_batches=5", "logger=none", "trainer.enable_progress_bar=false",
        ]  # fmt: skip
        return peak_rss("denoise.train", overrides)


def training_memory_row(csv_path: str, batches: int, targets: Targets) -> Row:
    """The peak of a training run of ``batches`` batches on ``csv_path``."""
    return Row(
        "memory",
        f"peak RSS, training on {Path(csv_path).name} ({batches} batches)",
        peak_training_rss(csv_path, batches),
        "GiB",
        target=stated("≤", targets.training_peak_gb, "GB"),
    )


def predict_memory_rows(sizes: list[float], targets: Targets) -> list[Row]:
    """``predict``'s peak RSS on a photo of each size (one view), and how much it grows per
    added megapixel: the photo's own buffers, not the network's activations, once the photo
    fills a batch of tiles (below that, each added tile adds its activations too)."""
    rows, peaks = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            photo = noisy_photo(size)
            source = saved_photo(photo, Path(folder) / f"{size:g}mp.png")
            target = Path(folder) / "restored.png"
            overrides = [f"input={source}", f"output={target}", "self_ensemble=1"]
            peak = peaks[photo[0].numel() / 1e6] = peak_rss("denoise.predict", overrides)
            what = f"peak RSS, predict on a {size:g} MP grey photo"
            rows.append(Row("memory", what, peak, "GiB"))
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        growth = (peaks[large] - peaks[small]) * 1024 / (large - small)
        tiling = shipped_model(NATURAL).tiling
        batch_area = tiling["tile_size"] ** 2 * tiling["batch_size"] / 1e6
        what = "predict: its peak RSS grows per megapixel by"
        note = "" if small >= batch_area else f"under {batch_area:.2g} MP: a batch of tiles fills"
        target = stated("≤", targets.predict_mib_per_megapixel, "MiB")
        rows.append(Row("memory", what, growth, "MiB", note, target))
    return rows
