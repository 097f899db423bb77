"""A web page on this machine to try the shipped models on a picture.

``python -m denoise.demo [port=7860] [host=127.0.0.1]`` serves the page and prints its
address: drop a picture or pick a sample, add the training noise with a seeded density
slider, choose the model and its views, restore it as ``predict`` does, compare noisy and
restored with a slider, read PSNR and SSIM (when the noise was added on the page) and download
the result as a PNG. Needs the ``demo`` extra (Gradio): ``pip install -e ".[demo]"``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from denoise.runtime.cli import command
from denoise.runtime.errors import UserError, user_errors

INSTALL = 'pip install -e ".[demo]"  (or: pip install gradio)'


@command("demo")
def main(cfg: DictConfig) -> None:
    # Gradio and torch load once the command runs: --help answers at once
    with user_errors():
        try:
            from denoise.web.page import serve
        except ModuleNotFoundError as error:
            if error.name != "gradio":
                raise
            raise UserError(
                "the demo page needs Gradio, which is not installed", fix=INSTALL
            ) from None
        serve(cfg)


if __name__ == "__main__":
    main()
