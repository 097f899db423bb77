"""Slim weights with a model card, and the blind model shipped inside the package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, command_config
from omegaconf import OmegaConf
from skimage import data as skimage_data
from skimage.transform import resize

from denoise.data.noise import add_salt_and_pepper
from denoise.inference.checkpoints import SHIPPED_WEIGHTS, load_denoiser
from denoise.inference.export_model import export
from denoise.models.filters import median_filter
from denoise.models.metrics import image_metrics
from denoise.models.networks import network_name
from denoise.runtime.errors import UserError
from denoise.training.summary import read_summary


def _as_cli_run(run_dir: Path, overrides: list[str]) -> None:
    """Write the .hydra/ files ``python -m denoise.train`` would have left in the run folder."""
    (run_dir / ".hydra").mkdir(exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text("model:\n  base_channels: 4\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))


@pytest.mark.slow
def test_export_writes_a_small_loadable_file_and_its_card(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    run_dir = tiny_checkpoint.parents[1]
    _as_cli_run(run_dir, ["model.net.base_channels=4", "trainer.max_epochs=1"])
    output = tmp_path / "weights" / "tiny.ckpt"

    export(command_config("export", run_dir=run_dir, output=output))

    last = tiny_checkpoint.with_name("last.ckpt")  # best.ckpt has weights only already
    assert output.stat().st_size < last.stat().st_size / 2  # no optimizer state
    original = load_denoiser(tiny_checkpoint, "cpu")
    slim = load_denoiser(output, "cpu")
    noisy = add_salt_and_pepper(torch.rand(2, 1, 48, 48), 0.1)
    torch.testing.assert_close(slim.denoise(noisy), original.denoise(noisy), rtol=0, atol=0)
    card = output.with_suffix(".md").read_text()
    summary = read_summary(run_dir)
    assert "python -m denoise.train model.net.base_channels=4 trainer.max_epochs=1" in card
    assert f"{summary['wall_time_s'] / 60:.1f} min on {summary['machine']}" in card
    assert "base_channels: 4" in card and "| test/psnr |" in card
    stored = torch.load(output, weights_only=False)["denoise_card"]
    assert stored["epochs"] == summary["epochs_completed"]


@pytest.mark.slow
def test_export_refuses_a_run_that_did_not_complete(tiny_checkpoint: Path, tmp_path: Path) -> None:
    run_dir = tiny_checkpoint.parents[1]
    _as_cli_run(run_dir, [])
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    output = tmp_path / "out.ckpt"
    with pytest.raises(UserError, match="not a completed training run \\(status 'failed'\\)"):
        export(command_config("export", run_dir=run_dir, output=output))
    assert not output.exists()


def _astronaut_face() -> torch.Tensor:
    """A 48×48 grayscale face that is not from FER2013 (scikit-image ships the picture)."""
    gray = skimage_data.astronaut()[30:230, 140:340].mean(axis=2) / 255
    face = resize(gray, (48, 48), anti_aliasing=True)
    return torch.from_numpy(np.round(face * 255) / 255).float().view(1, 1, 48, 48)


def _psnr(restored: torch.Tensor, clean: torch.Tensor) -> float:
    metrics = image_metrics()
    metrics.update(restored, clean)
    return metrics.compute()["psnr"].item()


def test_shipped_weights_are_small_and_loaded_without_a_checkpoint() -> None:
    assert SHIPPED_WEIGHTS.stat().st_size <= 10e6
    assert SHIPPED_WEIGHTS.with_suffix(".md").is_file()
    model = load_denoiser(None, "cpu")
    assert network_name(model.hparams.net) == "corruption_aware"
    assert not model.training


@pytest.mark.parametrize("density", [0.02, 0.1, 0.5, 0.9])
def test_shipped_model_restores_a_face_far_better_than_the_median_filter(density: float) -> None:
    clean = _astronaut_face().repeat(8, 1, 1, 1)
    generator = torch.Generator().manual_seed(7)
    noisy = add_salt_and_pepper(clean, density, generator=generator)
    model = load_denoiser(None, "cpu")
    model_psnr = _psnr(model.denoise(noisy), clean)
    median_psnr = _psnr(median_filter(noisy), clean)
    assert model_psnr > median_psnr + 10.0, (model_psnr, median_psnr)  # measured: 14-20 dB


@pytest.mark.parametrize("level", [0.0, 1.0], ids=["all black", "all white"])
def test_shipped_model_returns_a_clean_black_or_white_image_unchanged(level: float) -> None:
    clean = torch.full((1, 1, 48, 48), level)
    restored = load_denoiser(None, "cpu").denoise(clean)
    change = (restored - clean).abs() * 255
    # The stage-1 model changed 990 of an all-black image's 2,304 pixels, by up to 55 levels.
    assert int((change > 1).sum()) <= 23, "more than 1% of the pixels changed"
    assert float(change.max()) < 16
    assert _psnr(restored, clean) > 50


def test_shipped_model_returns_a_clean_face_nearly_unchanged() -> None:
    clean = _astronaut_face()
    assert int(((clean == 0) | (clean == 1)).sum()) > 20  # it has genuine black/white pixels
    restored = load_denoiser(None, "cpu").denoise(clean)
    assert _psnr(restored, clean) > 60  # the goal at 0% noise; the stage-1 model gave 71.3


@pytest.mark.slow
def test_a_model_trained_in_stages_keeps_every_stage_in_its_card(
    compose_train, tiny_checkpoint: Path, tiny_csv: Path, tmp_path: Path
) -> None:
    from hydra.core.global_hydra import GlobalHydra

    from denoise.training.run import train

    first_run = tiny_checkpoint.parents[1]
    _as_cli_run(first_run, ["model.net.base_channels=4", "trainer.max_epochs=1"])
    stage_one = tmp_path / "weights" / "stage1.ckpt"
    export(command_config("export", run_dir=first_run, output=stage_one))
    GlobalHydra.instance().clear()
    cfg = compose_train(
        f"data.csv_path={tiny_csv}",
        *TINY_MODEL,
        f"init_from={stage_one}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "test=false",
        "logger=none",
        output_dir=tmp_path / "stage2",
    )
    train(cfg)
    GlobalHydra.instance().clear()
    assert read_summary(tmp_path / "stage2")["warm_started_from"] == str(stage_one)
    _as_cli_run(tmp_path / "stage2", [f"init_from={stage_one}"])
    stage_two = tmp_path / "weights" / "stage2.ckpt"

    export(command_config("export", run_dir=tmp_path / "stage2", output=stage_two))

    card = stage_two.with_suffix(".md").read_text()
    assert f"python -m denoise.train init_from={stage_one}" in card
    assert "Started from the weights of an earlier run" in card
    assert "python -m denoise.train model.net.base_channels=4 trainer.max_epochs=1" in card
    stored = torch.load(stage_two, weights_only=True)["denoise_card"]
    assert stored["started_from"]["command"].endswith("trainer.max_epochs=1")
