"""The demo page (``python -m denoise.demo``): its work against predict's and add_noise's, its
messages, and the page itself driven in a real browser (Debian's headless Chromium)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from skimage import data

from denoise.benchmarks.launch import ADDRESS, run_until_served
from denoise.benchmarks.startup import demo_start_row, free_port
from denoise.benchmarks.targets import Targets
from denoise.data.noisy_files import add_noise
from denoise.files.images import read_image, write_image
from denoise.inference.checkpoints import PRECISIONS
from denoise.inference.restore_files import predict
from denoise.inference.shipped import SHIPPED_NAMES, check_view_count
from denoise.models.metrics import image_metrics
from denoise.web import choices, pictures
from tests.conftest import (
    REPO,
    child_env,
    command_config,
    python_module,
    run_command,
    user_error,
    wait_until,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RESTORING_KEYS = ("weights", "self_ensemble", "precision", "device", "tile_size", "overlap")
RESTORING_KEYS += ("batch_size", "max_pixels")
SHOWN_SCORES = re.compile(r"PSNR ([\d.]+) dB.*SSIM ([\d.]+)")

needs_gradio = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None, reason='gradio is not installed (".[demo]")'
)


def camera_crop(side: int = 64) -> np.ndarray:
    """A corner of scikit-image's camera: a grey picture of one tile."""
    return data.camera()[:side, :side]


def test_page_offers_what_predict_accepts() -> None:
    assert set(choices.MODELS) == set(SHIPPED_NAMES)
    assert set(choices.PRECISIONS) == set(PRECISIONS)
    counts = [choices.chosen_views(choice) for choice in choices.VIEWS]
    assert counts[0] is None  # the model's own
    assert [check_view_count(count, "self_ensemble") for count in counts[1:]] == counts[1:]
    for label in choices.SAMPLES:
        assert pictures.sample_picture(label).ndim in (2, 3)


def test_demo_restores_with_predicts_settings_and_defaults() -> None:
    demo, predict_cfg = (
        OmegaConf.load(REPO / "conf" / f"{name}.yaml") for name in ("demo", "predict")
    )
    assert {key: demo[key] for key in RESTORING_KEYS} == {
        key: predict_cfg[key] for key in RESTORING_KEYS
    }
    restoring, max_pixels = pictures.checked_settings(command_config("demo"))
    assert restoring == pictures.Restoring(weights="natural", device="auto")
    assert max_pixels == predict_cfg.max_pixels


def test_a_wrong_setting_is_one_line(capsys) -> None:
    lines = user_error(pictures.checked_settings, command_config("demo", "precision=fp16"), capsys)
    assert lines == ["error: precision=fp16: must be one of auto, fp32, bf16"]


@pytest.mark.parametrize("port", [0, 65536, 99999])
def test_a_port_outside_the_range_is_one_line(port: int, capsys) -> None:
    from denoise.web.page import serve

    lines = user_error(serve, command_config("demo", f"port={port}"), capsys)
    assert lines == [
        f"error: port={port}: must be a whole number "
        + ("of at least 1" if port < 1 else "from 1 to 65535")
    ]


def test_page_noise_is_add_noises(tmp_path: Path) -> None:
    picture = data.astronaut()[:40, :56]
    write_image(tmp_path / "clean.png", picture)
    cfg = command_config(
        "add_noise", "amount=0.4", "seed=3", input=tmp_path / "clean.png", output=tmp_path / "n.png"
    )
    add_noise(cfg)
    np.testing.assert_array_equal(pictures.noisy(picture, 0.4, 3), read_image(tmp_path / "n.png"))
    assert pictures.noisy(picture, 0.0, 3) is picture  # a picture of your own, noisy already


def test_page_restores_as_predict_does(tmp_path: Path) -> None:
    noisy = pictures.noisy(camera_crop(), 0.3, 1)
    write_image(tmp_path / "noisy.png", noisy)
    predict(command_config("predict", "self_ensemble=1", input=tmp_path / "noisy.png",
                           output=tmp_path / "predicted.png"))  # fmt: skip
    settings = pictures.Restoring(self_ensemble=1, device="cpu")
    restored, path = pictures.restored_file(noisy, settings, "noisy.png", tmp_path)
    assert path == tmp_path / "noisy-restored.png"
    np.testing.assert_array_equal(restored, read_image(tmp_path / "predicted.png"))
    np.testing.assert_array_equal(read_image(path), restored)
    assert not np.array_equal(restored, noisy)


def test_scores_are_evaluates() -> None:
    clean = camera_crop()
    off_by_one = np.where(clean < 255, clean + 1, clean - 1).astype(np.uint8)  # every pixel 1/255
    scored = pictures.scores(off_by_one, clean)
    assert scored["psnr"] == pytest.approx(20 * np.log10(255), abs=1e-3)
    assert pictures.scores(clean, clean)["ssim"] == pytest.approx(1.0)


def test_shown_is_eight_bits() -> None:
    wide = np.array([[0, 65535], [257, 32896]], dtype=np.uint16)
    np.testing.assert_array_equal(pictures.shown(wide), [[0, 255], [1, 128]])
    eight = camera_crop()
    assert pictures.shown(eight) is eight


@needs_gradio
def test_host_warning_only_off_this_machine() -> None:
    from denoise.web.page import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.20", "example.org", "::"]))


@needs_gradio
def test_bad_input_is_one_message_in_the_page(tmp_path: Path) -> None:
    import gradio as gr

    from denoise.web.page import DemoPage

    page = DemoPage(command_config("demo", "max_pixels=1000", "device=cpu"))
    page.warm_up()
    (tmp_path / "notes.png").write_text("not a picture")
    write_image(tmp_path / "large.png", camera_crop())  # 4096 pixels
    messages = []
    for path in (tmp_path / "notes.png", tmp_path / "large.png"):
        with pytest.raises(gr.Error) as shown:
            page.load_upload(str(path))
        messages.append(shown.value.message)
    assert messages == [
        "notes.png: not an image file (not PNG, JPEG, BMP or TIFF data)",
        "large.png: 64x64 is 0.0041 megapixels, over max_pixels=1000; "
        "set max_pixels higher, or to null for no limit",
    ]
    with pytest.raises(gr.Error, match="no picture yet: drop a picture or pick a sample first"):
        page.restore(None, "", 0.3, 0, "natural", "1", "fp32")


def test_demo_without_gradio_says_how_to_install(tmp_path: Path) -> None:
    blocked = (
        "import runpy, sys; sys.modules['gradio'] = None; sys.argv = ['demo']; "
        "runpy.run_module('denoise.demo', run_name='__main__')"
    )
    done = run_command([sys.executable, "-c", blocked], tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: the demo page needs Gradio, which is not installed",
        'pip install -e ".[demo]"  (or: pip install gradio)',
    ]


@contextmanager
def served_demo(folder: Path, *settings: str) -> Iterator[tuple[str, Path]]:
    """``python -m denoise.demo`` started as a user starts it; its address once printed, and
    its output file. Never leaves the server behind."""
    output = folder / "demo.out"
    command = python_module("denoise.demo", f"port={free_port()}", *settings)
    with output.open("w") as out:
        server = subprocess.Popen(command, cwd=folder, env=child_env(), stdout=out, stderr=out)
    try:

        def printed() -> bool:
            assert server.poll() is None, output.read_text()[-3000:]
            return ADDRESS.search(output.read_text()) is not None

        wait_until(printed, 120, "address printed")
        yield ADDRESS.search(output.read_text()).group(0), output
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
@needs_gradio
def test_a_wrong_setting_stops_the_server(tmp_path: Path) -> None:
    """The page is served before the settings that need torch are checked: a wrong one then
    stops the server with its one line."""
    command = python_module("denoise.demo", f"port={free_port()}", "device=cuda:7")
    done = run_command(command, tmp_path, timeout=300)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("error: device=cuda:7")
    assert "Traceback" not in done.stderr


def test_a_server_that_ends_before_serving_is_a_failure() -> None:
    run = run_until_served("denoise.predict", ["input=/no/such.png", "output=x.png"])
    assert run.failure == "failed (exit 1): error: /no/such.png: no such file or folder"


@pytest.mark.slow
@needs_gradio
def test_bench_times_the_demo_to_a_served_page(compose_config) -> None:
    row = demo_start_row(Targets.from_config(compose_config("bench")))
    assert row.what == "python -m denoise.demo, launch to a served page" and row.ratio == ""
    assert 0.5 < row.value < 120
    assert row.target == f"≤ 5 s {'✓' if row.value <= 5 else '✗'}"


@pytest.mark.slow
@needs_gradio
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is missing")
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM} (apt-get install chromium)")
def test_page_in_a_browser(tmp_path: Path) -> None:
    """Bad input, then a sample noised and restored: the PSNR shown is evaluate's, and the
    downloaded PNG is predict's output for add_noise's file of the same seed and density."""
    from playwright.sync_api import expect, sync_playwright

    amount, seed = "0.25", "7"
    write_image(tmp_path / "camera.png", data.camera())
    (tmp_path / "notes.png").write_text("not a picture")
    with served_demo(tmp_path) as (address, output), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        first = browser.new_page()
        first.goto(address)
        first.locator("#upload input[type=file]").set_input_files(tmp_path / "notes.png")
        expect(first.get_by_text("notes.png: not an image file (not PNG")).to_be_visible(
            timeout=60_000
        )
        first.close()

        page = browser.new_page(viewport={"width": 1280, "height": 1100})  # the server goes on
        page.goto(address)
        page.locator("#sample input").click()
        page.get_by_role("option", name="camera (grey)").click()
        for field, value in (("#amount", amount), ("#seed", seed)):
            number = page.locator(f"{field} input[type=number]")
            number.fill(value)
            number.press("Enter")
        page.locator("#views").get_by_text("1", exact=True).click()
        expect(page.locator("#noisy img")).to_be_visible(timeout=60_000)
        page.locator("#restore").click()
        expect(page.locator("#scores")).to_contain_text("SSIM", timeout=300_000)
        psnr, ssim = map(float, SHOWN_SCORES.search(page.locator("#scores").inner_text()).groups())
        with page.expect_download() as download:
            page.locator("#download").click()
        download.value.save_as(tmp_path / "downloaded.png")
        page.screenshot(path=tmp_path / "demo.png", full_page=True)
        browser.close()
    log = output.read_text()
    assert "Traceback" not in log, log

    for command in (
        ["denoise.add_noise", "input=camera.png", "output=noisy.png", f"amount={amount}",
         f"seed={seed}"],
        ["denoise.predict", "input=noisy.png", "output=predicted.png", "self_ensemble=1"],
    ):  # fmt: skip
        done = run_command(python_module(*command), tmp_path)
        assert done.returncode == 0, done.stderr
    downloaded = read_image(tmp_path / "downloaded.png")
    np.testing.assert_array_equal(downloaded, read_image(tmp_path / "predicted.png"))
    planes = [pictures.image_to_tensor(array)[0][None] for array in (downloaded, data.camera())]
    scored = image_metrics()(*planes)
    assert psnr == round(float(scored["psnr"]), 2)
    assert ssim == round(float(scored["ssim"]), 4)
    if os.environ.get("DENOISE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "demo.png", REPO / "docs" / "demo.png")
