"""Turn a training run into a small, self-describing weights file and its model card.

``python -m denoise.export run_dir=outputs/runs/… output=denoise/weights/blind-fer2013.ckpt``

The file keeps what ``DenoisingModule.load_from_checkpoint`` needs (weights and the flat
hyperparameters) and drops the optimizer state, which triples a training checkpoint's
size. The card (same name, ``.md``) gives the exact command and config that trained it,
the wall time and the machine, and the run's validation and test figures.
"""

from __future__ import annotations

from omegaconf import DictConfig

from denoise.runtime.cli import command
from denoise.runtime.errors import user_errors


@command("export")
def main(cfg: DictConfig) -> None:
    # torch loads once the command runs: --help and mistyped settings answer at once
    from denoise.inference.export_model import export

    with user_errors():
        export(cfg)


if __name__ == "__main__":
    main()
