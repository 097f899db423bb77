"""How every figure is timed and counted: wall time over a minimum duration, FLOPs, and the
precision a call computes in."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

PRECISIONS = ("fp32", "bf16")


def in_precision(precision: str) -> contextlib.AbstractContextManager:
    """fp32 as written, or bf16 the way Lightning's bf16-mixed runs a CPU model (autocast)."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seconds_per_call(
    fn: Callable[[], object], min_seconds: float, min_calls: int = 3, warm_up: bool = True
) -> float:
    """Mean wall time of ``fn`` over at least ``min_seconds`` and ``min_calls`` calls, after
    one warm-up call (left out where the caller warmed it: a photo's calls take seconds)."""
    if warm_up:
        fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()
