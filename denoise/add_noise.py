"""Add salt-and-pepper noise to an image file, e.g. to try a denoiser on a picture of your own.

``python -m denoise.add_noise input=photo.png output=noisy.png amount=0.3 seed=0``

The noise is the training noise (:mod:`denoise.data.noise`): each value of each colour channel is
replaced with probability ``amount``, by salt (the pixel type's maximum) with probability
``salt_vs_pepper``, else by pepper (0). Alpha is copied untouched. The same seed writes the
same file, byte for byte. The input is read as predict reads it (:func:`read_image`: the same
files, modes and ``max_pixels`` limit, and the same one-line errors).
"""

from __future__ import annotations

from omegaconf import DictConfig

from denoise.runtime.cli import command
from denoise.runtime.errors import user_errors


@command("add_noise")
def main(cfg: DictConfig) -> None:
    # torch loads once the command runs: --help and mistyped settings answer at once
    from denoise.data.noisy_files import add_noise

    with user_errors():
        add_noise(cfg)


if __name__ == "__main__":
    main()
