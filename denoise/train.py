"""Train, validate and test a denoiser: ``python -m denoise.train [hydra overrides]``.

Every run writes its config (``.hydra/``), checkpoints, TensorBoard logs and
``summary.json`` into its own folder under ``outputs/``; ``-m`` sweeps one folder per job.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from denoise.files.outputs import discard_unused_output_dir
from denoise.runtime.cli import command
from denoise.runtime.distributed import is_rank_zero_process, quiet_other_ranks, rank_overrides
from denoise.runtime.errors import user_errors


@command("train")
def main(cfg: DictConfig) -> float | None:
    # torch loads once the command runs: --help and mistyped settings answer at once
    from denoise.training.run import train

    if not is_rank_zero_process():
        quiet_other_ranks()
    with user_errors(cleanup=discard_unused_output_dir):  # which leaves other ranks' alone
        return train(cfg)


if __name__ == "__main__":
    # A process that Lightning's ddp (or Slurm, torchrun) starts as a non-zero rank runs this
    # same command: it writes no .hydra/ and no log file into the run folder.
    sys.argv += rank_overrides(sys.argv[1:])
    main()
