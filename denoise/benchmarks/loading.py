"""The data rows: parsing the FER2013 CSV cold and from its cache, an epoch of batches the
reference notebook's way (a row parsed in each ``__getitem__``) against ours, and the share of
a training step spent waiting on data and noise."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from denoise.benchmarks.table import Row
from denoise.benchmarks.targets import Targets, stated
from denoise.benchmarks.timing import seconds_per_call
from denoise.data.datamodule import FERDataModule
from denoise.data.fer_csv import load_fer_csv
from denoise.data.noise import add_salt_and_pepper

# The FER2013 CSV's rows per split, which a generated CSV of its size copies.
FER_SPLITS = {"Training": 28709, "PrivateTest": 3589, "PublicTest": 3589}


def bench_csv(cfg: DictConfig, folder: Path) -> str:
    """The CSV to measure: ``csv_path`` where given, else ``fer_csv`` where it exists, else a
    CSV of FER2013's size generated into ``folder``."""
    if cfg.csv_path:
        return str(cfg.csv_path)
    if cfg.fer_csv and Path(cfg.fer_csv).expanduser().is_file():
        return str(Path(cfg.fer_csv).expanduser())
    rng = np.random.default_rng(0)
    usages = [usage for usage, count in FER_SPLITS.items() for _ in range(count)]
    pixels = [" ".join(map(str, row)) for row in rng.integers(0, 256, (len(usages), 2304))]
    path = folder / "generated_fer_size.csv"
    pd.DataFrame({"emotion": 0, "pixels": pixels, "Usage": usages}).to_csv(path, index=False)
    return str(path)


def data_figures(
    csv_path: str,
    datamodule: FERDataModule,
    step_seconds: float,
    min_seconds: float,
    targets: Targets,
) -> list[Row]:
    """CSV parse cold and warm, the reference per-row parsing, and the data share of a step."""
    rows = []
    started = time.perf_counter()
    load_fer_csv(csv_path, datamodule.cache_dir, datamodule.splits)  # parses, writes the cache
    cold = time.perf_counter() - started
    started = time.perf_counter()
    load_fer_csv(csv_path, datamodule.cache_dir, datamodule.splits)
    warm = time.perf_counter() - started
    name = Path(csv_path).name
    first, reload = targets.first_parse_seconds, targets.reload_seconds
    rows.append(Row("data", f"first parse of {name}", cold, "s", target=stated("≤", first, "s")))
    rows.append(
        Row("data", f"reload of {name} from cache", warm, "s", target=stated("≤", reload, "s"))
    )

    datamodule.setup("fit")
    train = datamodule.datasets["train"]
    loader = datamodule.train_dataloader()
    batches = iter(loader)

    def next_batch() -> None:
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        datamodule.make_pair(batch)

    ours = seconds_per_call(next_batch, min_seconds)
    clean = torch.rand(datamodule.batch_size, datamodule.channels, 48, 48)
    noise = seconds_per_call(
        lambda: add_salt_and_pepper(clean, datamodule.noise.amount), min_seconds
    )
    reference = _reference_epoch_seconds(csv_path, len(train), datamodule.splits["train"])
    epoch_ours = ours * len(loader)
    rows.append(
        Row(
            "data",
            "one training epoch of batches, reference way (parse rows in __getitem__)",
            reference,
            "s",
            f"{reference / epoch_ours:.0f}× ours ({epoch_ours:.2f} s)",
        )
    )
    share = ours / (ours + step_seconds)
    rows.append(
        Row(
            "data",
            "waiting on data + noise, share of a training step",
            100 * share,
            "%",
            f"noise alone {100 * noise / (ours + step_seconds):.2f}%",
            stated("<", targets.data_share_percent, "%"),
        )
    )
    return rows


def _reference_epoch_seconds(
    csv_path: str, count: int, usages: list[str], sample: int = 2000
) -> float:
    """The reference notebook's loader: keep strings, parse one row per __getitem__."""
    frame = pd.read_csv(csv_path, nrows=max(sample, 1))
    texts = frame["pixels"].tolist()[:sample]
    started = time.perf_counter()
    for text in texts:
        image = np.array(text.split(), dtype=np.float32).reshape(48, 48) / 255.0
        torch.from_numpy(image).unsqueeze(0)
    return (time.perf_counter() - started) / len(texts) * count
