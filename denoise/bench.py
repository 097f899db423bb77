"""Benchmark: ``python -m denoise.bench`` prints one table measured in one run.

Ratios (to the machine's measured convolution ceiling, to the reference way of loading
data) keep figures comparable on a noisy machine. The table is written as ``bench.md``
and ``bench.json`` into the run folder (``outputs/bench/<date>/<time>/``).
"""

from __future__ import annotations

from omegaconf import DictConfig

from denoise.files.outputs import discard_unused_output_dir
from denoise.runtime.cli import command
from denoise.runtime.errors import user_errors


@command("bench")
def main(cfg: DictConfig) -> None:
    from denoise.benchmarks.suite import bench  # torch loads once the command runs, not for --help

    with user_errors(cleanup=discard_unused_output_dir):
        bench(cfg)


if __name__ == "__main__":
    main()
