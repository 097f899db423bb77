"""``evaluate`` on colour images: scored at the data's own ``data.channels``, a colour model
beside a grey one run per channel and the classical filters in one run, peers named by a
shipped model's name, and noise that hits whole pixels (``pixel_share``).

Every model here is tiny and untrained (seeded): what is checked is which model meets which
images how, not how well it restores them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import save_checkpoint
from omegaconf import DictConfig
from PIL import Image

from denoise.data.noise import candidate_mask
from denoise.evaluation.scoring import NOISY, Evaluation, evaluate
from denoise.inference.checkpoints import (
    CheckpointError,
    load_denoiser,
    named_checkpoint,
)
from denoise.inference.shipped import SHIPPED_MODELS
from denoise.inference.tiling import default_tiling, denoise_image
from denoise.models.filters import biharmonic_inpainting, classical_filters
from denoise.models.module import DenoisingModule
from denoise.runtime.errors import SettingError

TINY = {"architecture": "corruption_aware", "base_channels": 4, "depth": 3, "dropout": 0.0}
COLOUR_MODEL = "corruption-aware U-Net"
GREY_PER_CHANNEL = "corruption-aware U-Net (per channel)"


def _saved_model(path: Path, channels: int, seed: int) -> Path:
    """An untrained corruption-aware checkpoint for ``channels``-channel images (seeded)."""
    torch.manual_seed(seed)
    model = DenoisingModule(**TINY, in_channels=channels, out_channels=channels)
    return save_checkpoint(model, path)


@pytest.fixture
def colour_checkpoint(tmp_path: Path) -> Path:
    return _saved_model(tmp_path / "colour.ckpt", 3, seed=1)


@pytest.fixture
def grey_checkpoint(tmp_path: Path) -> Path:
    return _saved_model(tmp_path / "grey.ckpt", 1, seed=2)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Six 40x40 RGB pictures whose three channels differ (gradients running three ways)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rows, cols = np.mgrid[0:40, 0:40] / 40
    for index in range(6):
        phase = index / 6
        planes = [
            0.5 + 0.3 * np.sin(6 * rows + phase),
            0.5 + 0.3 * np.cos(5 * cols - phase),
            0.2 + 0.6 * (rows * cols + phase) % 0.6,
        ]
        array = np.clip(np.rint(np.stack(planes, axis=-1) * 255), 1, 254).astype(np.uint8)
        Image.fromarray(array).save(folder / f"photo{index}.png")
    return folder


@pytest.fixture
def run_evaluate(
    compose_config: Callable[..., DictConfig], photos: Path, tmp_path: Path
) -> Callable[..., tuple[Evaluation, Path]]:
    """``evaluate`` on two 32 px centre crops of ``photos``' test share at 10% and 50%;
    returns the result and the run folder."""
    runs = iter(range(100))

    def _run(*overrides: str) -> tuple[Evaluation, Path]:
        output_dir = tmp_path / f"evaluation{next(runs)}"
        cfg = compose_config(
            "evaluate",
            "data=folder",
            f"data.train_dir={photos}",
            "data.channels=3",
            "data.test_share=0.5",
            "data.eval_crop=center",
            "data.eval_crop_size=32",
            "limit=2",
            "densities=[0.1,0.5]",
            "example_densities=[0.1,0.5]",
            "example_count=2",
            "amf_max_window=7",
            "device=cpu",
            *overrides,
            output_dir=output_dir,
        )
        return evaluate(cfg), output_dir

    return _run


def _point(monkeypatch: pytest.MonkeyPatch, name: str, **paths: Path) -> None:
    """Make the shipped model ``name`` load these files (``weights``, ``colour``)."""
    entry = dataclasses.replace(SHIPPED_MODELS[name], **paths)
    monkeypatch.setitem(SHIPPED_MODELS, name, entry)


def test_one_run_scores_the_colour_model_the_grey_one_per_channel_and_the_filters(
    run_evaluate, monkeypatch: pytest.MonkeyPatch, colour_checkpoint: Path, grey_checkpoint: Path
) -> None:
    _point(monkeypatch, "natural", weights=grey_checkpoint, colour=colour_checkpoint)

    result, out = run_evaluate("weights=natural", "+peers.grey=natural", "self_ensemble=1")

    frame = pd.read_csv(out / "metrics.csv")
    methods = [NOISY, *classical_filters(), "grey", COLOUR_MODEL]
    assert sorted(frame["method"].unique()) == sorted(methods)
    assert frame.groupby("method").size().to_dict() == dict.fromkeys(methods, 2)
    assert set(frame["density"]) == {0.1, 0.5}
    assert frame[["psnr", "ssim"]].notna().all().all()
    context = json.loads((out / "metrics.json").read_text())
    # colour data: the shipped natural model scores its colour model, the peer its grey one
    assert context["checkpoint"] == str(colour_checkpoint)
    assert context["peers"] == {"grey": str(grey_checkpoint)}
    assert context["channels"] == 3 and context["images"] == 2
    assert context["channel_rules"] == {"grey": "per channel", COLOUR_MODEL: "colour"}
    assert (
        context["title"].startswith("test split (") and ", colour, noise seed" in context["title"]
    )
    assert result.examples[0.5]["clean"].shape == (2, 3, 32, 32)
    assert "| grey |" in (out / "metrics.md").read_text()

    # grey data: the same weights=natural scores the grey model
    result, out = run_evaluate("weights=natural", "data.channels=1", "self_ensemble=1")
    context = json.loads((out / "metrics.json").read_text())
    assert context["checkpoint"] == str(grey_checkpoint) and context["channels"] == 1
    assert result.examples[0.5]["clean"].shape == (2, 1, 32, 32)


def test_a_model_meets_images_of_another_channel_count_as_predict_runs_it(
    run_evaluate, colour_checkpoint: Path, grey_checkpoint: Path
) -> None:
    def check(checkpoint: Path, label: str, *overrides: str) -> None:
        one_density = ("densities=[0.5]", "example_densities=[0.5]")
        result, _ = run_evaluate(f"ckpt_path={checkpoint}", *one_density, *overrides)
        model = load_denoiser(checkpoint, "cpu")
        tiling = default_tiling(model)
        images = result.examples[0.5]
        for noisy, restored in zip(images[NOISY], images[label], strict=True):
            # one image at a time against the run's batch: the same up to rounding
            expected = denoise_image(model, noisy, **tiling)
            torch.testing.assert_close(restored, expected, rtol=0, atol=1e-6)
            if noisy.shape[0] == 3:  # a grey model: each channel as a grey image
                planes = [denoise_image(model, plane[None], **tiling) for plane in noisy]
                torch.testing.assert_close(restored, torch.cat(planes), rtol=0, atol=1e-6)

    check(grey_checkpoint, GREY_PER_CHANNEL)
    check(
        colour_checkpoint,
        "corruption-aware U-Net (grey as RGB, outputs averaged)",
        "data.channels=1",
    )


def test_the_classical_filters_work_on_each_colour_plane_on_its_own() -> None:
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand((2, 3, 20, 20), generator=generator) * 0.8 + 0.1
    noisy = torch.where(torch.rand(clean.shape, generator=generator) < 0.3, 1.0, clean)
    assert not torch.equal(candidate_mask(noisy)[:, 0], candidate_mask(noisy)[:, 1])
    for name, method in {**classical_filters(7), "biharmonic": biharmonic_inpainting}.items():
        planes = [method(noisy[:, channel : channel + 1]) for channel in range(3)]
        assert torch.equal(method(noisy), torch.cat(planes, dim=1)), name


def test_pixel_share_one_hits_all_channels_of_a_pixel_at_once(
    run_evaluate, grey_checkpoint: Path
) -> None:
    def hits(*overrides: str) -> tuple[torch.Tensor, dict]:
        one_density = ("densities=[0.5]", "example_densities=[0.5]")
        result, out = run_evaluate(f"ckpt_path={grey_checkpoint}", *one_density, *overrides)
        images = result.examples[0.5]
        # the clean crops hold no 0 or 255, so a pixel is hit exactly where it changed
        return images[NOISY] != images["clean"], json.loads((out / "metrics.json").read_text())

    whole, context = hits("data.noise.pixel_share=1")
    assert torch.equal(whole, whole[:, :1].expand_as(whole)) and 0.4 < whole.float().mean() < 0.6
    assert context["pixel_share"] == 1.0
    assert (
        "in 100% of the images the noise hits all channels of a pixel at once" in (context["title"])
    )
    apart, context = hits()  # default 0: each channel on its own, as MATLAB's imnoise does
    assert not torch.equal(apart, apart[:, :1].expand_as(apart))
    assert context["pixel_share"] == 0.0 and "all channels" not in context["title"]


@pytest.mark.parametrize("value", ["2", "-0.1"])
def test_pixel_share_outside_zero_to_one_is_one_setting_error(run_evaluate, value: str) -> None:
    with pytest.raises(SettingError, match=rf"^pixel_share={value}: must be") as refused:
        run_evaluate(f"pixel_share={value}")
    assert "\n" not in str(refused.value)


def test_a_peer_is_a_checkpoint_or_a_shipped_name_and_the_name_wins(
    monkeypatch: pytest.MonkeyPatch, grey_checkpoint: Path, tmp_path: Path
) -> None:
    _point(monkeypatch, "natural", weights=grey_checkpoint)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "natural").write_bytes(grey_checkpoint.read_bytes())  # a file of that name
    assert named_checkpoint("natural", "peers.grey") == grey_checkpoint
    assert named_checkpoint("faces", "peers.grey") == SHIPPED_MODELS["faces"].weights
    assert named_checkpoint("./natural", "peers.grey") == Path("natural")  # the file
    assert named_checkpoint(str(grey_checkpoint), "peers.grey") == grey_checkpoint
    _point(monkeypatch, "natural", weights=tmp_path / "absent.ckpt")
    with pytest.raises(CheckpointError, match="the shipped natural weights are missing") as missing:
        named_checkpoint("natural", "peers.grey")
    assert missing.value.fix.startswith("pass peers.grey=outputs/runs/")
    assert "peers.grey=faces" in missing.value.fix
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        named_checkpoint("natral", "peers.grey")


def test_the_face_model_as_a_peer_restores_each_colour_channel(
    run_evaluate, colour_checkpoint: Path
) -> None:
    _, out = run_evaluate(
        f"ckpt_path={colour_checkpoint}",
        "+peers.faces=faces",
        "densities=[0.1]",
        "example_densities=[0.1]",
    )
    context = json.loads((out / "metrics.json").read_text())
    assert context["peers"] == {"faces": str(SHIPPED_MODELS["faces"].weights)}
    assert context["channel_rules"]["faces"] == "per channel"
    assert "faces" in set(pd.read_csv(out / "metrics.csv")["method"])


def test_missing_colour_weights_say_how_to_score_the_grey_model_instead(
    run_evaluate, monkeypatch: pytest.MonkeyPatch, grey_checkpoint: Path, tmp_path: Path
) -> None:
    absent = tmp_path / "blind-natural-colour.ckpt"
    _point(monkeypatch, "natural", weights=grey_checkpoint, colour=absent)
    with pytest.raises(CheckpointError, match="colour weights are missing") as missing:
        run_evaluate("weights=auto")
    assert str(missing.value).startswith(str(absent))
    assert f"ckpt_path={grey_checkpoint} self_ensemble=8" in missing.value.fix


def test_tiles_true_restores_each_image_as_predict_does(
    run_evaluate, monkeypatch: pytest.MonkeyPatch, colour_checkpoint: Path, grey_checkpoint: Path
) -> None:
    small = {"tile_size": 16, "overlap": 4, "batch_size": 3}  # several tiles per 32 px crop
    _point(monkeypatch, "natural", weights=grey_checkpoint, colour=colour_checkpoint, tiling=small)
    one_density = ("densities=[0.5]", "example_densities=[0.5]", "self_ensemble=1")
    tiled, _ = run_evaluate("weights=natural", "+peers.grey=natural", "tiles=true", *one_density)
    whole, _ = run_evaluate("weights=natural", "+peers.grey=natural", *one_density)
    images = tiled.examples[0.5]
    colour, grey = load_denoiser(colour_checkpoint, "cpu"), load_denoiser(grey_checkpoint, "cpu")
    for index, noisy in enumerate(images[NOISY]):
        for label, model in ((COLOUR_MODEL, colour), ("grey", grey)):
            expected = denoise_image(model, noisy, **small)  # what predict gives
            torch.testing.assert_close(images[label][index], expected, rtol=0, atol=1e-6)
            assert not torch.equal(whole.examples[0.5][label][index], expected)  # tiles differ


def test_tiles_must_be_true_or_false(run_evaluate) -> None:
    with pytest.raises(SettingError, match=r"^tiles=maybe: must be true or false$"):
        run_evaluate("tiles=maybe")
