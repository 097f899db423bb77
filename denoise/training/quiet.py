"""Lightning's console output cut to what a reader of the run needs, while a run trains.

Lightning prints each of its lines twice under Hydra (its own ``INFO:`` handler, and Hydra's
handlers that it propagates to), advertises a cloud logger, names accelerators that are not
there, and warns about its own calls into torch. Here, only for the duration of a run:

- its lines go out once, through the root's handlers (the console and ``train.log``);
- the lines in :data:`DROPPED_LINES` are dropped;
- the warnings in :data:`LIBRARY_WARNINGS`, raised by Lightning's own code, are ignored.

Each entry is matched narrowly (a line's start, a warning's message and module), so that a
new message of the libraries still shows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LIGHTNING = "lightning"
"""The logger to which ``import lightning`` attaches its own console handler."""

RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
"""Where Lightning's ``rank_zero_info`` lines come from."""

DROPPED_LINES = (
    "💡 Tip:",  # an advert for a cloud logger
    "GPU available:",  # the run's accelerator is in its summary.json (machine) and log
    "TPU available:",
    "HPU available:",
    # our one-line summary (callbacks.BriefModelSummary) stands in for Lightning's table
    "Trainer already configured with model summary callbacks",
)
"""Starts of Lightning's info lines that say nothing about this run."""

LIBRARY_WARNINGS = (
    # Lightning's combined loader builds torch's deprecated LeafSpec itself (not our call);
    # torch's warning is attributed to Lightning's module, which is what the filter names
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        r"lightning\.pytorch\.utilities\._pytree",
    ),
    # the summary sizes weights at 32 bits under mixed precision, which is right: the
    # weights stay float32 and only the computation runs in bf16 or fp16
    (r"Precision .*-mixed is not supported by the model summary", r"lightning\.pytorch\."),
)
"""(message, module) regular expressions of warnings that Lightning's own code raises."""


class _DropLines(logging.Filter):
    """Drops the records whose message starts with one of :data:`DROPPED_LINES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(DROPPED_LINES)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within: Lightning's lines once and without adverts, and its own warnings ignored; all
    as it was afterwards. Lightning's own handler stays where nothing else would print."""
    lightning = logging.getLogger(LIGHTNING)
    own_handlers = list(lightning.handlers) if logging.getLogger().hasHandlers() else []
    drop = _DropLines()
    loggers = [logging.getLogger(name) for name in RANK_ZERO_LOGGERS]
    for handler in own_handlers:
        lightning.removeHandler(handler)
    for logger in loggers:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for message, module in LIBRARY_WARNINGS:
                warnings.filterwarnings("ignore", message=message, module=module)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)
        for handler in own_handlers:
            lightning.addHandler(handler)
