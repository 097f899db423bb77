"""The work of ``python -m denoise.predict`` (its usage: :mod:`denoise.predict`): plan the
(input, output) pairs of a file or a folder, check each before the model's work, restore it
through the Python API's :class:`~denoise.inference.api.Denoiser` (one path for both), write it
atomically, and count the files that failed."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from denoise.files.images import (
    IMAGE_SUFFIXES,
    ImageError,
    check_input_output,
    check_writable,
    describe,
    is_image_file,
    read_image,
    write_image,
)
from denoise.files.outputs import absolute
from denoise.files.reading import regular_file
from denoise.inference.api import Denoiser
from denoise.inference.checkpoints import PRECISIONS, pick_device
from denoise.inference.restorer import PictureRestorer
from denoise.inference.shipped import SHIPPED_NAMES, check_self_ensemble
from denoise.inference.tiling import TILING_KEYS
from denoise.runtime.errors import UserError, require_settings
from denoise.runtime.settings import one_of, whole_number

log = logging.getLogger(__name__)

USAGE = (
    "python -m denoise.predict input=IMAGE_OR_FOLDER output=PATH "
    "[weights=natural|faces] [ckpt_path=CHECKPOINT]"
)
LISTED_FAILURES = 5  # file names in the final count line; each failure has its own warning


class Job(NamedTuple):
    source: Path
    target: Path


def plan_jobs(source: Path, target: Path) -> list[Job]:
    """Every (input, output) pair, checked before the model loads."""
    if not source.is_dir():  # a link loop, a FIFO: said as what it is
        regular_file(source, ImageError, missing="no such file or folder")
        check_input_output(source, target)
        return [Job(source, target)]
    if target.is_file() or (not target.exists() and is_image_file(target)):
        raise ImageError(f"{target}: for a folder input, output must be a folder")
    if target.resolve() == source.resolve():
        raise ImageError(f"{target}: the outputs would overwrite the inputs; choose another folder")
    # Everything but subfolders: a link that leads nowhere (dangling, or a loop) or a FIFO named
    # like an image is one failure of the count, as a damaged file is, not left out unseen.
    files = sorted(path for path in source.iterdir() if not path.is_dir())
    for path in files:
        if not is_image_file(path):
            log.warning(f"skipping {path}: not an image file ({' '.join(IMAGE_SUFFIXES)})")
    jobs = [Job(path, target / path.name) for path in files if is_image_file(path)]
    if not jobs:
        raise ImageError(f"{source}: no image file in this folder ({' '.join(IMAGE_SUFFIXES)})")
    return jobs


def checked_restoring(cfg: DictConfig) -> tuple[dict[str, Any], int | None]:
    """The restoring settings of a command's config (``weights``, ``self_ensemble``,
    ``precision``, ``device`` and the tiling keys, named as in ``conf/predict.yaml``), and its
    ``max_pixels``: each checked before any work, so that a wrong one is one line. What
    ``predict`` and the demo page both check."""
    max_pixels = whole_number(cfg, "max_pixels", optional=True)
    whole_number(cfg, "tile_size", optional=True)
    whole_number(cfg, "overlap", minimum=0, optional=True)
    whole_number(cfg, "batch_size", optional=True)
    one_of(cfg, "precision", PRECISIONS)
    pick_device(cfg.device)
    restoring = {
        "weights": one_of(cfg, "weights", SHIPPED_NAMES),
        "self_ensemble": check_self_ensemble(cfg),
        "precision": cfg.precision,
        "device": cfg.device,
        **{key: cfg[key] for key in TILING_KEYS},
    }
    return restoring, max_pixels


def predict(cfg: DictConfig) -> list[Path]:
    """Denoise ``cfg.input`` (a file or a folder) into ``cfg.output``; return the files written.

    In folder mode a file that cannot be read or written is reported and skipped, and the
    others are still denoised; the command then fails with the count, so that a script
    notices (the files that did work are kept).
    """
    require_settings(cfg, USAGE)
    restoring, max_pixels = checked_restoring(cfg)
    source, target = Path(cfg.input), Path(cfg.output)
    jobs = plan_jobs(source, target)
    denoiser = Denoiser(
        PictureRestorer(
            cfg.ckpt_path,
            restoring["weights"],
            restoring["device"],
            restoring["precision"],
            restoring["self_ensemble"],
            {key: restoring[key] for key in TILING_KEYS},
            cfg.engine,
            cfg.cache_dir,
        )
    )
    log.info(f"Denoising {absolute(source)} into {absolute(target)} with {denoiser.restorer.name}")
    folder_mode = source.is_dir()
    written, failed = [], []
    with logging_redirect_tqdm():
        for job in tqdm(jobs, desc="denoising", unit="image", disable=not folder_mode):
            try:
                array = read_image(job.source, max_pixels)
                check_writable(job.target, array)  # before the model's work, not after
                started = time.perf_counter()
                write_image(job.target, denoiser.restore_array(array, job.source, ImageError))
            except ImageError as error:
                if not folder_mode:
                    raise
                log.warning(f"skipping {error}")
                failed.append(job.source.name)
                continue
            seconds = time.perf_counter() - started
            log.info(f"{job.source} -> {job.target} ({describe(array)}, {seconds:.1f} s)")
            written.append(job.target)
    if not folder_mode:
        log.info(f"Denoised image written to {absolute(target)}")
        return written
    summary = f"{len(written)} of {len(jobs)} images denoised into {absolute(target)}"
    if failed:
        names = ", ".join(failed[:LISTED_FAILURES])
        more = f" and {len(failed) - LISTED_FAILURES} more" if len(failed) > LISTED_FAILURES else ""
        raise UserError(f"{summary}; {len(failed)} failed: {names}{more}")
    log.info(summary)
    return written
