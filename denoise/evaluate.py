"""Score a trained denoiser against classical filters at several noise densities.

``python -m denoise.evaluate [ckpt_path=…/best.ckpt] [data.csv_path=…] [densities=[…]]``;
without ``ckpt_path`` it scores a model shipped in the package: ``weights=faces|natural``, or by
default (``auto``) the one that suits the data (faces for FER-style data, natural for folders).

Every method sees the very same noisy images (noise fixed by ``seed`` per density), and
PSNR/SSIM/MSE are averaged per image. The run folder gets ``metrics.csv``,
``metrics.json``, ``metrics.md``, ``metrics_vs_density.png`` and ``examples.png``, and the
error breakdown (where each method's error sits, and what the model missed or wrongly
replaced): ``diagnostic.md``, ``diagnostic.csv`` and ``diagnostic.png``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from denoise.files.outputs import discard_unused_output_dir
from denoise.runtime.cli import command
from denoise.runtime.errors import user_errors


@command("evaluate")
def main(cfg: DictConfig) -> None:
    # torch loads once the command runs: --help and mistyped settings answer at once
    from denoise.evaluation.scoring import evaluate

    with user_errors(cleanup=discard_unused_output_dir):
        evaluate(cfg)


if __name__ == "__main__":
    main()
