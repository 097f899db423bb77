"""Denoise image files with a model shipped in the package or a trained checkpoint.

``python -m denoise.predict input=photo.png output=clean.png [weights=faces|ckpt_path=…]``, or
``input=folder/ output=out/`` for every image of a folder. Without ``ckpt_path`` the shipped
model named by ``weights`` is used: ``natural`` by default (photos are what people give it).
Each output keeps its input's size, colour layout and pixel type; alpha is copied untouched
(:mod:`denoise.files.images` says how each kind of image is read). Nothing else is written
(no ``outputs/`` or ``.hydra/`` folder). In folder mode a file that cannot be read or written is
one warning; the other files are still denoised, and the command then ends with an error that
counts them.
"""

from __future__ import annotations

from omegaconf import DictConfig

from denoise.runtime.cli import command
from denoise.runtime.errors import user_errors


@command("predict")
def main(cfg: DictConfig) -> None:
    # torch loads once the command runs: --help and mistyped settings answer at once
    from denoise.inference.restore_files import predict

    with user_errors():
        predict(cfg)


if __name__ == "__main__":
    main()
