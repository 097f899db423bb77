"""The demo page, laid out with Gradio and served on this machine.

The page is served before torch loads: Gradio's own import is most of the start-up, so the
models load after the address is printed, while the page is read (a restore asked for before
then waits for them). Each handler turns a user error into one message in the page
(:func:`in_page`), and the server goes on serving.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
from omegaconf import DictConfig

from denoise.runtime.errors import SettingError, UserError, error_lines, is_user_error
from denoise.runtime.settings import whole_number
from denoise.web.choices import MODELS, OWN_VIEWS, PRECISIONS, SAMPLES, VIEWS, chosen_views

if TYPE_CHECKING:  # torch loads after the page is served
    from denoise.web.pictures import Restoring

log = logging.getLogger(__name__)

MAX_AMOUNT = 0.95
LOOPBACK_NAMES = ("localhost",)
LOCAL_FONTS = {"font": ("ui-sans-serif", "system-ui", "sans-serif"), "font_mono": ("monospace",)}


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def page_message(error: BaseException) -> str:
    """A user error as the page says it: the command's line (and fix), without ``error:``."""
    return "; ".join(error_lines(error)).removeprefix("error: ")


def in_page(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` with its user errors shown in the page as one message (and logged as a
    line); anything else is a bug, which Gradio logs with its traceback."""

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except Exception as error:
            if not is_user_error(error):
                raise
            message = page_message(error)
            log.warning(message)
            raise gr.Error(message, print_exception=False) from None

    return run


def score_line(scores: dict[str, float] | None, before: dict[str, float] | None) -> str:
    """The scores as the page shows them (Markdown), or why there are none."""
    if scores is None or before is None:
        return "No scores: the clean picture is known only when noise is added on the page."
    return (
        f"**PSNR {scores['psnr']:.2f} dB** (noisy {before['psnr']:.2f} dB) · "
        f"**SSIM {scores['ssim']:.4f}** (noisy {before['ssim']:.4f})"
    )


class DemoPage:
    """The page and its handlers, with the settings of ``conf/demo.yaml``."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.ready = threading.Event()
        self.failure: UserError | None = None
        self.settings: Restoring | None = None
        self.max_pixels: int | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="denoise-demo-"))
        self.restores = 0

    def warm_up(self) -> None:
        """Check the settings as predict does and load the models they name; a wrong setting
        is kept as :attr:`failure`."""
        try:
            from denoise.web.pictures import checked_settings, warm_up

            self.settings, self.max_pixels = checked_settings(self.cfg)
            warm_up(self.settings)
        except Exception as error:
            if not is_user_error(error):
                raise
            self.failure = error  # type: ignore[assignment]
        finally:
            self.ready.set()

    def restoring(self, model: str, views: str, precision: str) -> Restoring:
        """The settings of one restore: the page's choices over the config's."""
        self.ready.wait()
        if self.failure is not None:
            raise self.failure
        assert self.settings is not None
        return dataclasses.replace(
            self.settings, weights=model, self_ensemble=chosen_views(views), precision=precision
        )

    @in_page
    def load_upload(self, path: str | None) -> tuple[np.ndarray | None, str]:
        """A dropped or picked file, read as predict reads it (bit depth, colour, limits)."""
        if path is None:
            return None, ""
        from denoise.files.images import read_image

        self.ready.wait()
        name = Path(path).name
        try:
            return read_image(path, self.max_pixels), name
        except UserError as error:  # named as the user knows it, not by Gradio's copy
            raise UserError(str(error).replace(path, name), fix=error.fix) from None

    @in_page
    def load_sample(self, label: str | None) -> tuple[np.ndarray | None, str]:
        """A sample picture, named for its download."""
        if not label:
            return None, ""
        from denoise.web.pictures import sample_picture

        return sample_picture(label), f"{SAMPLES[label]}.png"

    @in_page
    def preview(self, picture: np.ndarray | None, amount: float, seed: float) -> np.ndarray | None:
        """The picture that will be restored: with the noise of the slider and seed."""
        if picture is None:
            return None
        from denoise.web.pictures import noisy, shown

        return shown(noisy(picture, amount, int(seed)))

    @in_page
    def restore(
        self,
        picture: np.ndarray | None,
        name: str,
        amount: float,
        seed: float,
        model: str,
        views: str,
        precision: str,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio's way)
    ) -> tuple[tuple[np.ndarray, np.ndarray], str, Any]:
        """Restore the (noised) picture; the slider, the scores and the file to download."""
        if picture is None:
            raise UserError("no picture yet: drop a picture or pick a sample first")
        progress(0, desc="loading the model")
        settings = self.restoring(model, views, precision)
        from denoise.web.pictures import noisy, restored_file, scores, shown

        given = noisy(picture, amount, int(seed))
        progress(0.05, desc="restoring")
        self.restores += 1
        folder = self.folder / str(self.restores)  # one per restore: sessions never share one
        folder.mkdir()
        restored, path = restored_file(given, settings, name, folder)
        clean = picture if amount > 0 else None
        line = score_line(
            scores(restored, clean) if clean is not None else None,
            scores(given, clean) if clean is not None else None,
        )
        download = gr.DownloadButton(value=path, interactive=True)
        return (shown(given), shown(restored)), line, download

    def layout(self) -> gr.Blocks:
        """The page: a picture in, noise, model and views, restore, compare, scores, file."""
        cfg = self.cfg
        with gr.Blocks(title="denoise: restore a picture") as blocks:
            gr.Markdown(
                "## Restore a picture from salt-and-pepper noise\n"
                "Drop a picture of your own (noisy already, or add noise here) or pick a "
                "sample, then restore it with a shipped model, exactly as "
                "`python -m denoise.predict` would."
            )
            picture = gr.State(None)
            name = gr.State("")
            with gr.Row():
                with gr.Column():
                    upload = gr.File(
                        label="Your picture (drop or click)", type="filepath", elem_id="upload"
                    )
                    sample = gr.Dropdown(
                        list(SAMPLES), value=None, label="…or a sample", elem_id="sample"
                    )
                    amount = gr.Slider(
                        0, MAX_AMOUNT, value=cfg.amount, step=0.01, elem_id="amount",
                        label="Noise to add: the share of values replaced (0: none)",
                    )  # fmt: skip
                    seed = gr.Number(
                        cfg.seed, precision=0, minimum=0, label="Seed of the noise", elem_id="seed"
                    )
                with gr.Column():
                    shown_picture = gr.Image(
                        label="The picture to restore", type="numpy", format="png",
                        interactive=False, elem_id="noisy",
                    )  # fmt: skip
            with gr.Row():
                model = gr.Radio(list(MODELS), value=cfg.weights, label="Model", elem_id="model")
                views = gr.Radio(
                    list(VIEWS), value=OWN_VIEWS if cfg.self_ensemble is None
                    else str(cfg.self_ensemble),
                    label="Views averaged: more is better and slower", elem_id="views",
                )  # fmt: skip
                precision = gr.Radio(
                    list(PRECISIONS), value=cfg.precision, label="Precision", elem_id="precision"
                )
            button = gr.Button("Restore", variant="primary", elem_id="restore")
            compare = gr.ImageSlider(
                label="Noisy | restored", type="numpy", format="png", elem_id="compare"
            )
            score = gr.Markdown(elem_id="scores")
            download = gr.DownloadButton(
                "Download the restored PNG", interactive=False, elem_id="download"
            )

            noise_inputs = [picture, amount, seed]
            upload.upload(self.load_upload, upload, [picture, name]).success(
                self.preview, noise_inputs, shown_picture
            )
            sample.input(self.load_sample, sample, [picture, name]).success(
                self.preview, noise_inputs, shown_picture
            )
            for changed in (amount, seed):
                changed.change(
                    self.preview, noise_inputs, shown_picture, trigger_mode="always_last"
                )
            button.click(
                self.restore,
                [picture, name, amount, seed, model, views, precision],
                [compare, score, download],
            )
        return blocks


HIGHEST_PORT = 65535


def serve(cfg: DictConfig) -> None:
    """Serve the page and print its address; load the models; serve until Ctrl+C."""
    port = whole_number(cfg, "port")
    if port > HIGHEST_PORT:
        raise SettingError(f"port={port}: must be a whole number from 1 to {HIGHEST_PORT}")
    host = str(cfg.host)
    if not is_loopback(host):
        log.warning(
            f"host={host}: the page is open to other machines that reach this address, and "
            "anyone who opens it runs the model on this one"
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's requests to itself
    page = DemoPage(cfg)
    blocks = page.layout()
    try:
        blocks.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            ssr_mode=False,
            theme=gr.themes.Default(**LOCAL_FONTS),  # no font from the internet
        )
    except OSError as error:
        raise UserError(
            f"port={port}: cannot serve there ({error})", fix="choose another port="
        ) from None
    shown_host = f"[{host}]" if ":" in host else host
    log.info(f"The demo page is served at http://{shown_host}:{port} (Ctrl+C stops it)")
    page.warm_up()
    if page.failure is not None:
        blocks.close()
        raise page.failure
    blocks.block_thread()
