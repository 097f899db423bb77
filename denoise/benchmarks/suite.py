"""The work of ``python -m denoise.bench`` (its usage: :mod:`denoise.bench`): the table's rows
in order, each from the module that measures it (:mod:`~denoise.benchmarks.machine`,
:mod:`~denoise.benchmarks.training` against :mod:`~denoise.benchmarks.ceilings`,
:mod:`~denoise.benchmarks.loading`, :mod:`~denoise.benchmarks.memory`,
:mod:`~denoise.benchmarks.inference`, :mod:`~denoise.benchmarks.photos`,
:mod:`~denoise.benchmarks.startup`), held to the config's :mod:`~denoise.benchmarks.targets`;
then ``bench.md`` and ``bench.json``."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from denoise.benchmarks.inference import inference_rows
from denoise.benchmarks.loading import bench_csv, data_figures
from denoise.benchmarks.machine import machine_rows
from denoise.benchmarks.memory import predict_memory_rows, training_memory_row
from denoise.benchmarks.photos import PHOTO_KINDS, photo_rows, whole_photo_rows
from denoise.benchmarks.startup import demo_start_row, startup_rows
from denoise.benchmarks.table import Row, markdown
from denoise.benchmarks.targets import Targets
from denoise.benchmarks.timing import PRECISIONS
from denoise.benchmarks.training import Setup, training_rows
from denoise.data.datamodule import FERDataModule
from denoise.data.settings import check_data_settings
from denoise.files.outputs import absolute, folder_listing
from denoise.inference.checkpoints import load_denoiser
from denoise.inference.engines import ENGINES
from denoise.inference.shipped import FACES
from denoise.models.module import DenoisingModule
from denoise.models.self_ensemble import VIEW_COUNTS
from denoise.runtime.errors import SettingError
from denoise.runtime.settings import (
    positive_number,
    positive_numbers,
    setting,
    some_of,
    true_or_false,
    whole_number,
)


def run_bench(cfg: DictConfig, targets: Targets) -> list[Row]:
    """Every row of the table, in its order."""
    torch.manual_seed(0)
    seconds = float(cfg.min_seconds)
    precisions = list(cfg.precisions)
    rows = machine_rows()

    module: DenoisingModule = instantiate(cfg.model)
    batch, ref = int(cfg.data.batch_size), cfg.reference
    reference = DenoisingModule(in_channels=ref.channels, out_channels=ref.channels)
    shipped = load_denoiser(None, "cpu", weights=FACES)  # the face model
    shipped_design = DenoisingModule(**shipped.hparams)  # fresh weights
    size, channels = int(ref.image_size), int(ref.channels)
    setups = [  # the model being trained first: its rate is held to the target
        Setup("default model (48×48×1)", module, batch, 48, module.hparams.net["in_channels"]),
        Setup("shipped blind design (48×48×1)", shipped_design, batch, 48, 1),
        Setup(
            f"reference U-Net ({size}×{size}×{channels})",
            reference,
            int(ref.batch_size),
            size,
            channels,
            fp32_only=True,
        ),
    ]
    training, step_seconds = training_rows(setups, precisions, seconds, targets)
    rows += training

    with tempfile.TemporaryDirectory() as folder:
        csv_path = bench_csv(cfg, Path(folder))
        datamodule: FERDataModule = instantiate(cfg.data, csv_path=csv_path, cache_dir=folder)
        rows += data_figures(csv_path, datamodule, step_seconds, seconds, targets)
        if cfg.peak_memory_batches:
            rows.append(training_memory_row(csv_path, int(cfg.peak_memory_batches), targets))

    rows += inference_rows("default model", module, cfg, seconds, precisions, targets)
    rows += inference_rows("shipped blind model", shipped, cfg, seconds, precisions, targets)
    photos = cfg.photos
    rows += photo_rows(cfg, seconds, targets)
    rows += predict_memory_rows([float(size) for size in photos.memory_megapixels], targets)
    whole = [float(size) for size in photos.whole_megapixels]
    rows += whole_photo_rows(whole, list(photos.whole_kinds), targets)
    if cfg.startup:
        rows += [*startup_rows(targets), demo_start_row(targets)]
    return rows


def check_bench_settings(cfg: DictConfig) -> Targets:
    """Every value that would fail minutes into the benchmark, checked before it starts;
    the targets the rows are held to."""
    if cfg.get("csv_path") and not Path(cfg.csv_path).expanduser().is_file():
        raise SettingError(f"csv_path={cfg.csv_path}: no such file")
    positive_number(cfg, "min_seconds")
    batches = setting(cfg, "inference_batches")
    if (
        not isinstance(batches, list)
        or not batches
        or not all(
            isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in batches
        )
    ):
        raise SettingError(f"inference_batches={batches}: must be a list of batch sizes >= 1")
    whole_number(cfg, "peak_memory_batches", minimum=0)
    chosen = setting(cfg, "precisions")
    if not isinstance(chosen, list) or not chosen or not set(chosen) <= set(PRECISIONS):
        raise SettingError(f"precisions={chosen}: must be a list of {' and '.join(PRECISIONS)}")
    for key in ("image_size", "channels", "batch_size"):
        whole_number(cfg, f"reference.{key}")
    positive_number(cfg, "photos.megapixels")
    some_of(cfg, "photos.views", VIEW_COUNTS, "counts")
    some_of(cfg, "photos.engines", ENGINES, "engines")
    positive_numbers(cfg, "photos.memory_megapixels", what="sizes", allow_empty=True)
    positive_numbers(cfg, "photos.whole_megapixels", what="sizes", allow_empty=True)
    some_of(cfg, "photos.whole_kinds", PHOTO_KINDS, "kinds")
    true_or_false(cfg, "startup")
    check_data_settings(cfg)
    return Targets.from_config(cfg)


def bench(cfg: DictConfig) -> None:
    """Measure every row, then write bench.md and bench.json and print the table."""
    output = Path(cfg.paths.output_dir)
    print(f"This benchmark writes into {absolute(output)}")
    targets = check_bench_settings(cfg)
    rows = run_bench(cfg, targets)
    output.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    (output / "bench.md").write_text(table + "\n")
    (output / "bench.json").write_text(json.dumps([asdict(row) for row in rows], indent=2))
    print(table)
    print("\n" + folder_listing(output, "Outputs of this benchmark in"))
