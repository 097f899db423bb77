"""Shipped models by name (``weights=faces|natural``): the registry, ``ckpt_path`` winning over
``weights``, ``auto`` choosing by the data, predict's default (natural) with its own tiling,
and one-line errors for a bad name and for a shipped file missing from the install.

The natural model's weights are not in the package yet, so every test that needs them points
the registry at a tiny checkpoint, and none depends on that file being there or not."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import REPO, command_config, save_checkpoint, smooth_images, user_error
from omegaconf import DictConfig, OmegaConf
from PIL import Image

import denoise.inference.restorer as restorer_module
from denoise.evaluation.scoring import evaluate
from denoise.inference.checkpoints import (
    SHIPPED_WEIGHTS,
    CheckpointError,
    read_checkpoint,
    resolve_checkpoint,
)
from denoise.inference.restore_files import predict
from denoise.inference.shipped import (
    SHIPPED_MODELS,
    WEIGHTS_DIR,
    pick_weights,
    shipped_model,
    weights_for_data,
)
from denoise.inference.tiling import REFERENCE_TILING
from denoise.models.module import DenoisingModule
from denoise.models.networks import NETWORKS, Design
from denoise.runtime.errors import SettingError
from denoise.training.recipe import apply_stage
from denoise.training.warm_start import check_init_from, init_path

pytestmark = pytest.mark.usefixtures("one_thread")
AWARE = {"_target_": NETWORKS["corruption_aware"]}  # a run's model.net
UNET = {"_target_": NETWORKS["unet"]}
FIX = "pass ckpt_path=outputs/runs/…/checkpoints/best.ckpt"


def point(monkeypatch: pytest.MonkeyPatch, name: str, weights: Path) -> None:
    """Make the shipped model ``name`` load ``weights`` (its tiling stays the registry's)."""
    entry = dataclasses.replace(SHIPPED_MODELS[name], weights=weights)
    monkeypatch.setitem(SHIPPED_MODELS, name, entry)


@pytest.fixture
def noisy_photo(tmp_path: Path) -> Path:
    """A 150x140 smooth picture with 10% salt-and-pepper: larger than the natural model's
    tiles, so that tiling settings matter."""
    clean = smooth_images(1, 150, 140, seed=5)[0]
    draw = np.random.default_rng(5).random((2, *clean.shape))
    noisy = np.where(draw[0] < 0.1, np.where(draw[1] < 0.5, 255, 0), clean).astype(np.uint8)
    path = tmp_path / "noisy.png"
    iio.imwrite(path, noisy)
    return path


@pytest.fixture
def untrained_unet(tmp_path: Path) -> Path:
    """A checkpoint of a small untrained U-Net: enough for what only reads hyperparameters."""
    return save_checkpoint(DenoisingModule(base_channels=4, depth=3), tmp_path / "unet.ckpt")


# ---------------------------------------------------------------- the registry


def test_the_registry_names_each_model_its_file_card_and_tiling() -> None:
    faces, natural = SHIPPED_MODELS["faces"], SHIPPED_MODELS["natural"]
    assert list(SHIPPED_MODELS) == ["faces", "natural"]
    assert faces.weights == WEIGHTS_DIR / "blind-fer2013.ckpt" == SHIPPED_WEIGHTS
    assert faces.card == WEIGHTS_DIR / "blind-fer2013.md"
    assert natural.weights == WEIGHTS_DIR / "blind-natural.ckpt"
    assert natural.card == WEIGHTS_DIR / "blind-natural.md"
    assert WEIGHTS_DIR == REPO / "denoise" / "weights"  # pyproject ships weights/*.ckpt, *.md
    assert dict(faces.tiling) == {"tile_size": 48, "overlap": 0, "batch_size": 256}
    assert dict(natural.tiling) == {"tile_size": 128, "overlap": 16, "batch_size": 32}
    with pytest.raises(TypeError):
        faces.tiling["tile_size"] = 8  # type: ignore[index]  # one place, not edited by users


def test_the_face_model_ships_in_the_package_and_stays_the_default_of_the_library() -> None:
    faces = SHIPPED_MODELS["faces"]
    assert faces.weights.is_file() and faces.card.is_file()
    assert "blind-fer2013.ckpt" in faces.card.read_text()
    hyper_parameters = read_checkpoint(faces.weights)["hyper_parameters"]
    assert hyper_parameters["architecture"] == "corruption_aware"  # the flat form, read as is
    # export, bench and the tests call the loaders without a name: that is the face model
    assert resolve_checkpoint(None) == resolve_checkpoint(None, "faces") == faces.weights
    assert init_path("shipped") == init_path("faces") == faces.weights


def test_an_explicit_ckpt_path_wins_over_weights(
    monkeypatch: pytest.MonkeyPatch, untrained_unet: Path, tmp_path: Path
) -> None:
    point(monkeypatch, "natural", tmp_path / "absent" / "blind-natural.ckpt")
    assert resolve_checkpoint(untrained_unet, "natural") == untrained_unet  # never looked up
    assert resolve_checkpoint(str(untrained_unet), "faces") == untrained_unet
    with pytest.raises(CheckpointError, match="the shipped natural weights are missing"):
        resolve_checkpoint(None, "natural")
    point(monkeypatch, "natural", untrained_unet)
    assert resolve_checkpoint(None, "natural") == untrained_unet
    with pytest.raises(SettingError, match=r"^weights=cats: must be one of faces, natural$"):
        resolve_checkpoint(None, "cats")


def test_auto_picks_faces_for_fer_style_data_and_natural_for_folders(
    compose_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    embedded = compose_config("evaluate").data  # data=fer, no CSV: the embedded default
    csv = compose_config("evaluate", f"data.csv_path={tmp_path / 'fer.csv'}").data
    folder = compose_config("evaluate", "data=folder").data  # train_dir still ??? : not read
    assert compose_config("evaluate").weights == "auto"
    assert weights_for_data(embedded) == weights_for_data(csv) == "faces"
    assert weights_for_data(folder) == "natural"
    assert pick_weights("auto", folder) == "natural" and pick_weights("auto", csv) == "faces"
    assert pick_weights("faces", folder) == "faces" and pick_weights("natural", csv) == "natural"
    other = OmegaConf.create({"_target_": "elsewhere.MyDataModule"})
    unknown = r"^weights=auto: no shipped model is chosen for data of type elsewhere\.MyDataModule$"
    with pytest.raises(SettingError, match=unknown):
        weights_for_data(other)
    assert pick_weights("faces", other) == "faces"  # a name given needs no guess
    with pytest.raises(SettingError, match=r"^weights=cats: must be one of faces, natural$"):
        pick_weights("cats", csv)


# ---------------------------------------------------------------- predict


@pytest.mark.slow
def test_predict_uses_the_natural_model_by_default_with_its_own_tiling(
    monkeypatch: pytest.MonkeyPatch,
    tiny_checkpoint: Path,
    noisy_photo: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert command_config("predict", input="x.png", output="y.png").weights == "natural"
    point(monkeypatch, "natural", tiny_checkpoint)
    tilings: list[dict[str, int]] = []
    views: list[int] = []
    real_denoise_image = restorer_module.denoise_image

    def recording(model: DenoisingModule, image: torch.Tensor, **tiling: int) -> torch.Tensor:
        tilings.append(tiling)
        views.append(model.views)
        return real_denoise_image(model, image, **tiling)

    monkeypatch.setattr(restorer_module, "denoise_image", recording)
    caplog.set_level(logging.INFO, logger="denoise.inference")
    natural = dict(SHIPPED_MODELS["natural"].tiling)

    def run(name: str, **settings: object) -> np.ndarray:
        predict(command_config("predict", input=noisy_photo, output=tmp_path / name, **settings))
        return iio.imread(tmp_path / name)

    default = run("default.png")
    assert tilings.pop() == natural and views.pop() == 8  # every orientation, averaged
    assert "with the shipped natural model (best.ckpt for grey pictures, " in caplog.text
    caplog.clear()

    explicit = run("explicit.png", ckpt_path=tiny_checkpoint, self_ensemble=8, **natural)
    assert tilings.pop() == natural and views.pop() == 8
    assert f"with {tiny_checkpoint}" in caplog.text
    np.testing.assert_array_equal(default, explicit)  # the tiny checkpoint's very output

    faces = run("faces.png", weights="faces")
    assert tilings.pop() == dict(SHIPPED_MODELS["faces"].tiling)
    assert views.pop() == 2  # as given and mirrored: faces are upright
    assert not np.array_equal(default, faces)  # so the comparison above can tell them apart

    # A checkpoint of your own keeps its architecture's tiling and one pass, whatever weights
    # says; tiling and views given explicitly win over a shipped model's.
    run("own.png", ckpt_path=tiny_checkpoint, weights="faces")
    assert tilings.pop() == REFERENCE_TILING and views.pop() == 1
    single = run("set.png", tile_size=64, batch_size=3, self_ensemble=1)
    assert tilings.pop() == {"tile_size": 64, "overlap": natural["overlap"], "batch_size": 3}
    assert views.pop() == 1
    assert not np.array_equal(default, single)  # the eight views did change the output


def test_predict_refuses_a_bad_name_before_reading_anything(
    tmp_path: Path, noisy_photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = command_config(
        "predict", input=noisy_photo, output=tmp_path / "clean.png", weights="cats"
    )
    assert user_error(predict, cfg, capsys) == [
        "error: weights=cats: must be one of faces, natural"
    ]
    cfg = command_config(
        "predict", input=tmp_path / "absent.png", output=tmp_path / "clean.png", weights="x"
    )
    assert user_error(predict, cfg, capsys) == ["error: weights=x: must be one of faces, natural"]
    cfg = command_config(
        "predict", input=noisy_photo, output=tmp_path / "clean.png", self_ensemble=6
    )
    assert user_error(predict, cfg, capsys) == ["error: self_ensemble=6: must be one of 1, 2, 4, 8"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["noisy.png"]


def test_a_shipped_model_missing_from_the_install_is_one_line_naming_file_and_fix(
    monkeypatch: pytest.MonkeyPatch,
    compose_config: Callable[..., DictConfig],
    noisy_photo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    absent = tmp_path / "install" / "blind-natural.ckpt"
    point(monkeypatch, "natural", absent)
    missing = f"error: {absent}: the shipped natural weights are missing from this install"

    cfg = command_config("predict", input=noisy_photo, output=tmp_path / "clean.png")
    assert user_error(predict, cfg, capsys) == [missing, f"{FIX}, or weights=faces"]
    assert not (tmp_path / "clean.png").exists()

    # evaluate on a folder picks natural by itself, and stops before reading the folder
    cfg = compose_config("evaluate", "data=folder", f"data.train_dir={tmp_path / 'photos'}")
    assert user_error(evaluate, cfg, capsys) == [missing, f"{FIX}, or weights=faces"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()

    with pytest.raises(CheckpointError, match="the shipped natural weights are missing") as caught:
        check_init_from("natural", AWARE)
    assert caught.value.fix == (
        "pass init_from=outputs/runs/…/checkpoints/best.ckpt, or init_from=faces"
    )

    point(monkeypatch, "faces", tmp_path / "install" / "blind-fer2013.ckpt")
    cfg = command_config(
        "predict", input=noisy_photo, output=tmp_path / "clean.png", weights="faces"
    )
    assert user_error(predict, cfg, capsys)[1] == FIX  # no other shipped model to offer


# ---------------------------------------------------------------- evaluate and init_from


@pytest.mark.slow
def test_evaluate_scores_the_natural_model_on_a_folder_and_records_its_file(
    monkeypatch: pytest.MonkeyPatch,
    compose_config: Callable[..., DictConfig],
    tiny_checkpoint: Path,
    tmp_path: Path,
) -> None:
    point(monkeypatch, "natural", tiny_checkpoint)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, image in enumerate(smooth_images(10, 36, 40, seed=3)):
        Image.fromarray(image).save(photos / f"{index}.png")
    cfg = compose_config(
        "evaluate",
        "data=folder",
        f"data.train_dir={photos}",
        "data.crop_size=32",
        "limit=1",
        "densities=[0.1]",
        "example_densities=[]",
        "amf_max_window=3",
        "device=cpu",
        output_dir=tmp_path / "evaluation",
    )
    result = evaluate(cfg)
    saved = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert saved["checkpoint"] == str(tiny_checkpoint)
    assert "U-Net" in result.metrics  # the tiny U-Net, not the corruption-aware face model
    assert "corruption-aware U-Net" not in result.metrics
    assert saved["self_ensemble"] == 8  # the natural model's own views
    assert saved["title"].endswith("; models averaged over 8 orientations (self_ensemble=8)")


def test_init_from_takes_a_shipped_model_by_name(
    monkeypatch: pytest.MonkeyPatch, untrained_unet: Path
) -> None:
    point(monkeypatch, "natural", untrained_unet)
    assert init_path("natural") == untrained_unet
    check_init_from("natural", UNET)
    with pytest.raises(CheckpointError, match="holds a unet model"):
        check_init_from("natural", AWARE)
    check_init_from("shipped", AWARE)  # still the face model
    assert shipped_model("faces").weights == init_path("shipped")


def test_the_last_stage_of_the_recipe_builds_the_shipped_natural_model(
    compose_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """The recipe's last stage (experiment=natural stage=crops_176): its model settings,
    learning rate and schedule must be the ones the shipped weights were trained with."""
    overrides = ["experiment=natural", "stage=crops_176", f"data.train_dir='{tmp_path}'"]
    cfg = compose_config("train", *overrides, "init_from=natural")
    apply_stage(cfg)
    saved = torch.load(shipped_model("natural").weights, weights_only=True)["hyper_parameters"]
    model = OmegaConf.to_container(cfg.model, resolve=True)
    for key in ("optimizer", "scheduler"):
        assert {k: model[key][k] for k in saved[key]} == saved[key], key
    configured = Design.from_settings({k: v for k, v in model.items() if not k.startswith("_")})
    shipped = Design.from_settings(saved)  # the flat settings it was saved with
    assert configured.net == shipped.net
    assert (configured.loss, configured.channels_last) == (shipped.loss, shipped.channels_last)
    assert cfg.data.crop_size == 176 and cfg.trainer.max_epochs == 18


def test_the_shipped_natural_model_beats_biharmonic_inpainting_on_a_photo_it_never_saw() -> None:
    """The natural weights, through predict's own tiling, on a crop of scikit-image's camera
    (not in train400): better than the best classical filter at 30% and 70%, and a clean
    photo comes back with every pixel that is not black or white exactly as it was."""
    from skimage import data

    from denoise.data.noise import add_salt_and_pepper
    from denoise.inference.checkpoints import load_denoiser
    from denoise.inference.tiling import denoise_image
    from denoise.models.filters import biharmonic_inpainting

    natural = SHIPPED_MODELS["natural"]
    assert natural.weights.is_file() and natural.card.is_file()
    model = load_denoiser(str(natural.weights), "cpu", "fp32")
    clean = torch.from_numpy(data.camera()[96:288, 160:352].astype(np.float32) / 255)[None]
    for density in (0.3, 0.7):
        noisy = add_salt_and_pepper(
            clean[None], density, generator=torch.Generator().manual_seed(3)
        )
        restored = denoise_image(model, noisy[0], **natural.tiling)
        inpainted = biharmonic_inpainting(noisy)[0]
        model_mse = ((restored - clean) ** 2).mean()
        classical_mse = ((inpainted - clean) ** 2).mean()
        assert 10 * torch.log10(classical_mse / model_mse) > 0.5, density  # at least 0.5 dB
    untouched = denoise_image(model, clean, **natural.tiling)
    neither = (clean > 0) & (clean < 1)
    assert torch.equal(untouched[neither], clean[neither])


def test_the_shipped_natural_model_keeps_a_pure_black_sky_black_under_heavy_noise() -> None:
    """Photos have pure black regions (a night sky), which salt-and-pepper imitates pixel by
    pixel: the natural model's exposure stage (experiment=natural stage=exposure) learned to
    keep them. At 90% its first stage restored such a region as grey (whole-crop PSNR 10.7
    dB, against 22.6 for biharmonic inpainting); the shipped weights keep it black and beat
    biharmonic inpainting on the whole crop at 10%, 50% and 90%."""
    from skimage import data

    from denoise.data.noise import add_salt_and_pepper
    from denoise.inference.checkpoints import load_denoiser
    from denoise.inference.tiling import denoise_image
    from denoise.models.filters import biharmonic_inpainting

    natural = SHIPPED_MODELS["natural"]
    model = load_denoiser(str(natural.weights), "cpu", "fp32")
    clean = torch.from_numpy(data.camera()[96:288, 160:352].astype(np.float32) / 255)[None]
    clean[:, :, :80] = 0.0  # the left 80 columns: a black sky
    sky = clean == 0
    for density in (0.1, 0.5, 0.9):
        noisy = add_salt_and_pepper(
            clean[None], density, generator=torch.Generator().manual_seed(3)
        )
        restored = denoise_image(model, noisy[0], **natural.tiling)
        inpainted = biharmonic_inpainting(noisy)[0]
        assert ((restored - clean) ** 2)[sky].mean() < 0.005, density  # stays black
        model_mse = ((restored - clean) ** 2).mean()
        classical_mse = ((inpainted - clean) ** 2).mean()
        assert model_mse < classical_mse, density
