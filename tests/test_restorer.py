"""What restores a picture in predict (issue 25): the shipped natural model's colour model for
colour pictures and its grey model for grey ones, and views spent by picture size."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import command_config, save_checkpoint

from denoise.files.images import image_to_tensor
from denoise.inference.restore_files import predict
from denoise.inference.restorer import PictureRestorer, is_grey
from denoise.inference.shipped import NATURAL_VIEW_MEGAPIXELS, SHIPPED_MODELS
from denoise.inference.tiling import denoise_image
from denoise.models.denoiser import Denoiser
from denoise.models.networks import Design


def save_model(path: Path, channels: int, seed: int) -> Path:
    """A tiny untrained corruption-aware model of ``channels`` channels, saved as a checkpoint;
    its keep gate is pushed to "replace" so that its output differs from its input."""
    torch.manual_seed(seed)
    design = Design.from_settings(
        dict(
            in_channels=channels,
            out_channels=channels,
            base_channels=4,
            depth=2,
            dropout=0.0,
            architecture="corruption_aware",
            global_context=True,
        )
    )
    return save_checkpoint(Denoiser(design), path)


@pytest.fixture
def shipped_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The natural model's grey and colour weights, pointed at tiny models."""
    grey = save_model(tmp_path / "grey.ckpt", 1, seed=1)
    colour = save_model(tmp_path / "colour.ckpt", 3, seed=2)
    entry = dataclasses.replace(SHIPPED_MODELS["natural"], weights=grey, colour=colour)
    monkeypatch.setitem(SHIPPED_MODELS, "natural", entry)
    return grey, colour


def noisy_picture(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clean = rng.integers(40, 200, (height, width, channels), dtype=np.uint8)
    hit = rng.random(clean.shape) < 0.2
    return np.where(hit, np.where(rng.random(clean.shape) < 0.5, 255, 0), clean).astype(np.uint8)


def test_colour_pictures_go_to_the_colour_model_and_grey_ones_to_the_grey_model(
    shipped_pair: tuple[Path, Path],
) -> None:
    grey_path, colour_path = shipped_pair
    restorer = PictureRestorer(weights="natural", self_ensemble=1)
    colour = noisy_picture(40, 36, 3)
    restored = restorer.restore(colour)
    model = restorer.model(grey=False)
    assert model.hparams.net["in_channels"] == 3
    planes, _ = image_to_tensor(colour)
    expected = denoise_image(model, planes, **restorer.model_tiling(model))
    np.testing.assert_array_equal(restored, np.rint(expected.numpy().transpose(1, 2, 0) * 255))

    grey = noisy_picture(40, 36, 1)[..., 0]
    restored_grey = restorer.restore(grey)
    assert (
        restored_grey.shape == grey.shape
        and restorer.model(grey=True).hparams.net["in_channels"] == 1
    )
    assert set(restorer._models) == {grey_path, colour_path}  # each loaded once, then kept


def test_an_rgb_picture_with_equal_channels_is_restored_as_grey(
    shipped_pair: tuple[Path, Path],
) -> None:
    restorer = PictureRestorer(weights="natural", self_ensemble=1)
    grey = noisy_picture(30, 30, 1)
    as_rgb = np.repeat(grey, 3, axis=-1)
    assert is_grey(image_to_tensor(as_rgb)[0]) and not is_grey(
        image_to_tensor(noisy_picture(30, 30, 3))[0]
    )
    restored = restorer.restore(as_rgb)
    assert restored.shape == as_rgb.shape
    np.testing.assert_array_equal(restored[..., 0], restorer.restore(grey[..., 0]))
    assert (restored == restored[..., :1]).all()
    assert list(restorer._models) == [shipped_pair[0]]  # the colour model was never needed


@pytest.mark.parametrize(
    ("megapixels", "views"),
    [(0.05, 8), (0.25, 8), (0.26, 4), (0.5, 4), (1.0, 2), (1.01, 1), (12.0, 1)],
)
def test_the_natural_model_spends_views_by_size(megapixels: float, views: int) -> None:
    assert NATURAL_VIEW_MEGAPIXELS == 2.0  # the figures above follow from it
    assert SHIPPED_MODELS["natural"].views_for(round(megapixels * 1e6)) == views
    assert SHIPPED_MODELS["faces"].views_for(round(megapixels * 1e6)) == 2  # always its own


def test_a_colour_picture_counts_the_networks_three_passes() -> None:
    natural = SHIPPED_MODELS["natural"]
    assert natural.views_for(250_000, passes=3) == 2  # 8 views for 0.25 MP grey
    assert natural.views_for(80_000, passes=3) == 8
    assert natural.views_for(1_000_000, passes=3) == 1


def test_the_views_line_says_what_was_chosen_and_how_to_get_the_best(
    shipped_pair: tuple[Path, Path],
) -> None:
    restorer = PictureRestorer(weights="natural")
    assert restorer.views_note(200_000) is None  # all 8: nothing traded
    assert restorer.views_note(1_000_000) == (
        "2 views (self_ensemble) for this 1.0-megapixel grey picture: views are spent where "
        "they pay (all 8 up to 0.25 MP for grey pictures); self_ensemble=8 gives the best "
        "quality in about 4x the time"
    )
    assert restorer.views_note(1_000_000, passes=4) == (
        "1 view (self_ensemble) for this 1.0-megapixel colour picture: views are spent where "
        "they pay (all 8 up to 0.06 MP for colour pictures); self_ensemble=8 gives the best "
        "quality in about 8x the time"
    )
    assert PictureRestorer(weights="natural", self_ensemble=1).views_note(5_000_000) is None
    assert PictureRestorer(ckpt_path=shipped_pair[0]).views(5_000_000) == 1


def test_predict_restores_a_colour_photo_with_the_colour_model(
    shipped_pair: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import imageio.v3 as iio

    photo = tmp_path / "photo.png"
    iio.imwrite(photo, noisy_picture(50, 60, 3))
    cfg = command_config("predict", f"input={photo}", f"output={tmp_path / 'clean.png'}")
    caplog.set_level(logging.INFO, logger="denoise")
    predict(cfg)
    restored = iio.imread(tmp_path / "clean.png")
    expected = PictureRestorer(weights="natural").restore(iio.imread(photo))
    np.testing.assert_array_equal(restored, expected)
    assert not (restored == restored[..., :1]).all()  # the channels were restored together


def test_predict_with_onnxruntime_gives_what_torch_gives(
    shipped_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import imageio.v3 as iio

    photo = tmp_path / "photo.png"
    iio.imwrite(photo, noisy_picture(50, 60, 3))
    outputs = {}
    for engine in ("torch", "onnxruntime"):
        target = tmp_path / f"{engine}.png"
        settings = [f"input={photo}", f"output={target}", f"engine={engine}"]
        predict(command_config("predict", *settings, f"cache_dir={tmp_path / 'cache'}"))
        outputs[engine] = iio.imread(target).astype(int)
    assert np.abs(outputs["torch"] - outputs["onnxruntime"]).max() <= 1  # rounding, at most
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1  # the colour model's


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"engine": "tf"}, "engine=tf: must be one of torch, onnxruntime"),
        (
            {"engine": "onnxruntime", "precision": "bf16"},
            "precision=bf16: engine=onnxruntime runs in fp32 on the CPU",
        ),
    ],
)
def test_engine_settings_are_checked_before_any_work(
    shipped_pair: tuple[Path, Path], settings: dict[str, str], line: str
) -> None:
    from denoise.runtime.errors import SettingError

    with pytest.raises(SettingError) as raised:
        PictureRestorer(weights="natural", **settings)
    assert str(raised.value) == line
