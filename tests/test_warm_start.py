"""``init_from``: a run starts from another model's weights with a fresh schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, save_checkpoint, smooth_images

from denoise.data.noise import add_salt_and_pepper
from denoise.inference.checkpoints import CheckpointError, read_checkpoint
from denoise.models.module import DenoisingModule
from denoise.models.networks import NETWORKS
from denoise.training.run import train
from denoise.training.warm_start import check_init_from, warm_start

AWARE = {"_target_": NETWORKS["corruption_aware"]}  # a run's model.net
UNET = {"_target_": NETWORKS["unet"]}
SMALL = {"architecture": "corruption_aware", "base_channels": 4, "depth": 3, "dropout": 0.0}


def _trained_looking(design: dict) -> DenoisingModule:
    """A model of ``design`` whose weights are not the initial ones (seeded)."""
    torch.manual_seed(0)
    model = DenoisingModule(**design).eval()
    for parameter in model.parameters():
        parameter.data.add_(torch.randn_like(parameter) * 0.05)
    return model


def _noisy_pictures(density: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Four smooth 24x24 pictures, clean and under seeded salt-and-pepper."""
    clean = torch.from_numpy(smooth_images(4, 24, 24)).unsqueeze(1).float() / 255
    return clean, add_salt_and_pepper(clean, density, generator=torch.Generator().manual_seed(1))


def _train_two_steps(model: DenoisingModule, noisy: torch.Tensor, clean: torch.Tensor) -> None:
    """Two SGD steps (the first lifts zero weights off zero), then back to eval mode."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(2):
        optimizer.zero_grad()
        model.loss(model(noisy), clean).backward()
        optimizer.step()
    model.eval()


def test_a_grown_model_starts_out_computing_what_the_old_one_did(tmp_path: Path) -> None:
    old = _trained_looking(SMALL)
    path = save_checkpoint(old, tmp_path / "old.ckpt")
    grown = DenoisingModule(**SMALL, global_context=True).eval()

    warm_start(grown, str(path))

    _, noisy = _noisy_pictures(0.3)
    assert torch.allclose(grown.denoise(noisy), old.denoise(noisy), atol=1e-6)
    first = grown.net.backbone.encoder[0][0].weight
    assert first.shape[1] == 5 and torch.all(first[:, 3:] == 0)


def test_attention_and_a_refinement_stage_grow_a_model_without_changing_its_output(
    tmp_path: Path,
) -> None:
    old = _trained_looking(SMALL)
    path = save_checkpoint(old, tmp_path / "old.ckpt")
    grown = DenoisingModule(**SMALL, attention_levels=2, refine_channels=4).eval()

    warm_start(grown, str(path))

    clean, noisy = _noisy_pictures(0.5)
    assert torch.allclose(grown.denoise(noisy), old.denoise(noisy), atol=1e-6)
    # ...and the new parts do train: a step moves the output.
    _train_two_steps(grown, noisy, clean)
    assert not torch.allclose(grown.denoise(noisy), old.denoise(noisy), atol=1e-4)
    assert grown.net.refiner.output.weight.abs().sum() > 0
    assert grown.net.backbone.attention[0].proj.weight.abs().sum() > 0


@pytest.mark.parametrize(
    "design",
    [
        SMALL,
        {**SMALL, "global_context": True, "refine_channels": 4},
        {"base_channels": 4, "depth": 3, "dropout": 0.0, "attention_gates": True},
    ],
    ids=["corruption-aware", "with context planes and refiner", "attention U-Net"],
)
def test_a_wider_model_starts_out_computing_what_the_narrower_one_did(
    tmp_path: Path, design: dict
) -> None:
    old = _trained_looking(design)
    for name, buffer in old.named_buffers():  # trained-looking BatchNorm statistics too
        if name.endswith(("running_mean", "running_var")):
            buffer.add_(torch.rand_like(buffer) * 0.1)
    path = save_checkpoint(old, tmp_path / "old.ckpt")
    wider = DenoisingModule(**{**design, "base_channels": 7}).eval()

    warm_start(wider, str(path))

    clean, noisy = _noisy_pictures(0.5)
    assert torch.allclose(wider.denoise(noisy), old.denoise(noisy), atol=1e-5)
    # the new channels are there and compute something; only what reads them starts at zero
    first = getattr(wider.net, "backbone", wider.net).encoder[0][0]
    assert first.weight.shape[0] == 7 and first.weight[4:].abs().sum() > 0
    _train_two_steps(wider, noisy, clean)
    assert not torch.allclose(wider.denoise(noisy), old.denoise(noisy), atol=1e-4)


def test_weights_of_another_size_or_design_are_refused_in_one_line(tmp_path: Path) -> None:
    path = save_checkpoint(DenoisingModule(**{**SMALL, "base_channels": 8}), tmp_path / "wide.ckpt")
    with pytest.raises(CheckpointError, match="this model's is"):
        warm_start(DenoisingModule(**SMALL), str(path))  # narrower: channels would be lost
    attended = {**SMALL, "attention_levels": 1}
    path = save_checkpoint(DenoisingModule(**attended), tmp_path / "attended.ckpt")
    with pytest.raises(CheckpointError, match="cannot be widened without changing"):
        warm_start(DenoisingModule(**{**attended, "base_channels": 8}), str(path))
    path = save_checkpoint(DenoisingModule(**SMALL), tmp_path / "small.ckpt")
    with pytest.raises(CheckpointError, match="lacks weights"):
        warm_start(DenoisingModule(**{**SMALL, "depth": 4}), str(path))
    unet = save_checkpoint(DenoisingModule(base_channels=4, depth=3), tmp_path / "unet.ckpt")
    with pytest.raises(CheckpointError, match="holds a unet model"):
        check_init_from(str(unet), AWARE)
    check_init_from("shipped", AWARE)  # the packaged blind model


@pytest.mark.slow
def test_training_with_init_from_starts_at_the_given_weights(
    compose_train, tiny_csv: Path, tmp_path: Path
) -> None:
    source = _trained_looking(SMALL)
    path = save_checkpoint(source, tmp_path / "source.ckpt")
    cfg = compose_train(
        f"data.csv_path={tiny_csv}",
        "model=corruption_aware",
        *TINY_MODEL,
        f"init_from={path}",
        "optimizer.lr=1e-12",  # Adam moves each weight by about lr: it stays where it started
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
    )
    train(cfg)
    trained = read_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    first = "net.backbone.encoder.0.0.weight"
    assert torch.allclose(trained["state_dict"][first], source.state_dict()[first], atol=1e-8)
