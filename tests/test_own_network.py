"""A network of your own is one YAML file (``model/net``), and checkpoints written before the
network was a ``_target_`` config (the shipped ones) load unchanged: the same network, the
same outputs, through Lightning's loader and through inference's."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, python_module, run_command
from omegaconf import DictConfig
from PIL import Image

from denoise.inference.checkpoints import load_denoiser, read_checkpoint
from denoise.inference.shipped import SHIPPED_MODELS
from denoise.inference.tiling import (
    REFERENCE_TILING,
    WHOLE_TILING,
    check_tiling_memory,
    default_tiling,
    denoise_image,
    describe_tiling,
)
from denoise.models.corruption_aware import CorruptionAwareUNet
from denoise.models.denoiser import Denoiser
from denoise.models.module import DenoisingModule
from denoise.models.networks import NETWORKS, Design
from denoise.training.run import apply_dropout_shortcut

MY_NET = '''
from torch import nn


class MyNet(nn.Module):
    """A residual two-conv network: nothing like the project's U-Nets."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, out_channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)
'''
MY_NET_CONFIG = """
_target_: my_pkg.MyNet
in_channels: ${data.channels}
out_channels: ${data.channels}
width: 6
"""


def _own_network(tmp_path: Path) -> tuple[Path, Path]:
    """A package ``my_pkg`` with ``MyNet`` and a config folder naming it: what a user writes."""
    package = tmp_path / "code" / "my_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(MY_NET))
    conf = tmp_path / "my_conf" / "model" / "net"
    conf.mkdir(parents=True)
    (conf / "my_net.yaml").write_text(MY_NET_CONFIG)
    return tmp_path / "code", tmp_path / "my_conf"


@pytest.mark.slow
def test_a_network_of_your_own_trains_predicts_and_evaluates_from_one_yaml_file(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, conf = _own_network(tmp_path)
    run_dir = tmp_path / "run"
    command = python_module(
        "denoise.train",
        f"hydra.searchpath=[file://{conf}]",
        "model/net=my_net",
        "debug=quick",
        f"data.csv_path={tiny_csv}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
        "data.batch_size=8",
        "trainer.enable_progress_bar=false",
    )
    result = run_command(command, tmp_path, PYTHONPATH=f"{REPO}:{code}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]

    last = run_dir / "checkpoints" / "last.ckpt"
    saved = read_checkpoint(last)["hyper_parameters"]
    assert saved["net"] == {
        "_target_": "my_pkg.MyNet",
        "in_channels": 1,  # from data.channels
        "out_channels": 1,
        "width": 6,
    }
    monkeypatch.syspath_prepend(str(code))
    trained = DenoisingModule.load_from_checkpoint(last, map_location="cpu", weights_only=True)
    assert type(trained.net).__name__ == "MyNet" and trained.net.body[0].out_channels == 6
    plain = load_denoiser(last, device="cpu")
    noisy = torch.rand(2, 1, 20, 13)
    assert torch.equal(plain.denoise(noisy), trained.eval().denoise(noisy))

    # predict and evaluate take its checkpoint as they take any other
    best = run_dir / "checkpoints" / "best.ckpt"
    picture = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "noisy.png")
    env = {"PYTHONPATH": f"{REPO}:{code}"}
    predicted = run_command(
        python_module(
            "denoise.predict", f"ckpt_path={best}", "input=noisy.png", "output=clean.png"
        ),
        tmp_path,
        **env,
    )
    assert predicted.returncode == 0, (predicted.stdout + predicted.stderr)[-3000:]
    assert "my_pkg.MyNet declares no size_multiple" in predicted.stdout + predicted.stderr
    net = trained.net.eval().to(memory_format=torch.channels_last)
    source = torch.from_numpy(picture).float().div(255)[None, None]
    with torch.no_grad():
        computed = net(source.contiguous(memory_format=torch.channels_last)).clamp(0.0, 1.0)
    expected = np.rint(computed[0, 0].numpy() * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "clean.png")), expected)

    evaluated = run_command(
        python_module(
            "denoise.evaluate",
            f"ckpt_path={best}",
            f"data.csv_path={tiny_csv}",
            "densities=[0.1,0.5]",
            "example_count=2",
            f"hydra.run.dir={tmp_path / 'evaluation'}",
        ),
        tmp_path,
        **env,
    )
    assert evaluated.returncode == 0, (evaluated.stdout + evaluated.stderr)[-3000:]
    assert "my_pkg.MyNet" in (tmp_path / "evaluation" / "metrics.md").read_text()


def test_a_settings_typo_in_your_network_is_one_line(tiny_csv: Path, tmp_path: Path) -> None:
    code, conf = _own_network(tmp_path)
    command = python_module(
        "denoise.train",
        f"hydra.searchpath=[file://{conf}]",
        "model/net=my_net",
        "+model.net.widht=8",
        f"data.csv_path={tiny_csv}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    result = run_command(command, tmp_path, PYTHONPATH=f"{REPO}:{code}")
    assert result.returncode != 0
    assert "error: model.net.widht: not a setting of my_pkg.MyNet" in result.stderr
    assert "did you mean model.net.width?" in result.stderr
    assert "Traceback" not in result.stderr


def _old_network(flat: dict) -> CorruptionAwareUNet:
    """The network as ``build_network`` built it from a checkpoint's flat settings before
    ``model/net``: the class's constructor with the old arguments, in the old order."""
    return CorruptionAwareUNet(
        flat["in_channels"],
        flat["base_channels"],
        flat["depth"],
        flat["dropout"],
        flat["negative_slope"],
        flat["packed_dropout"],
        global_context=flat.get("global_context", False),
        attention_levels=flat.get("attention_levels", 0),
        refine_channels=flat.get("refine_channels", 0),
        cross_channel=flat.get("cross_channel", False),
        colour_sigma=flat.get("colour_sigma", 0.0),
        luminance_sigma=flat.get("luminance_sigma", 0.0),
    )


SHIPPED_FILES = {
    **{name: model.weights for name, model in SHIPPED_MODELS.items()},
    **{f"{name}-colour": model.colour for name, model in SHIPPED_MODELS.items() if model.colour},
}


@pytest.mark.parametrize("name", sorted(SHIPPED_FILES))
def test_each_shipped_checkpoint_loads_unchanged_with_the_same_outputs(name: str) -> None:
    path = SHIPPED_FILES[name]
    checkpoint = read_checkpoint(path)
    flat = checkpoint["hyper_parameters"]
    assert "net" not in flat and flat["architecture"] == "corruption_aware"  # the old form
    old = _old_network(flat)
    old.load_state_dict(
        {key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items()}
    )
    old = old.to(memory_format=torch.channels_last).eval()
    channels = flat["in_channels"]
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(2, channels, 37, 29, generator=generator)
    hit = torch.rand(clean.shape, generator=generator)
    noisy = torch.where(hit < 0.2, 0.0, torch.where(hit > 0.8, 1.0, clean))
    noisy = noisy.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = old(noisy).contiguous()

    loaded = load_denoiser(path, device="cpu")
    assert dict(loaded.hparams)["net"]["_target_"] == NETWORKS["corruption_aware"]
    with torch.no_grad():
        assert torch.equal(loaded(noisy), expected)
    trained = DenoisingModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert trained.hparams.net == dict(loaded.hparams)["net"]
    with torch.no_grad():
        assert torch.equal(trained.eval()(noisy), expected)


def test_old_flat_settings_are_read_in_one_place_into_the_net_config() -> None:
    flat = {"architecture": "unet", "base_channels": 4, "depth": 3, "global_context": False}
    design = Design.from_settings({**flat, "loss": "psnr"})
    assert design.loss == "psnr"
    assert design.net["_target_"] == NETWORKS["unet"]
    assert (design.net["base_channels"], design.net["depth"], design.net["dropout"]) == (4, 3, 0.2)
    assert "global_context" not in design.net  # off, and not a setting of the U-Net
    with pytest.raises(ValueError, match="global_context is not a setting of the unet"):
        Design.from_settings({**flat, "global_context": True})
    assert Design.from_settings(asdict(design)) == design  # saved again, read the same


def test_model_dropout_is_a_shortcut_for_the_networks_own_setting(
    compose_train: Callable[..., DictConfig],
) -> None:
    """``python -m denoise.train model.dropout=0.2`` (the reference notebook's name) keeps
    working: it sets ``model.net.dropout``, which the checks, a resume and the checkpoint read."""
    cfg = compose_train("model.dropout=0.35")
    apply_dropout_shortcut(cfg)
    assert cfg.model.net.dropout == 0.35 and cfg.model.dropout is None
    untouched = compose_train()
    apply_dropout_shortcut(untouched)
    assert untouched.model.net.dropout == 0.2  # null: the network's own
    module = DenoisingModule(net={"_target_": NETWORKS["unet"]}, dropout=0.35)
    assert module.hparams["net"]["dropout"] == 0.35 and "dropout" not in module.hparams
    with pytest.raises(TypeError, match="takes no dropout"):
        Design.from_settings({"net": {"_target_": "torch.nn.Identity"}, "dropout": 0.1})


class Downsampling(torch.nn.Module):
    """A network of your own that halves the resolution twice, and says so."""

    size_multiple = 4

    def __init__(self, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.down = torch.nn.Conv2d(in_channels, 4, 4, stride=4)
        self.up = torch.nn.ConvTranspose2d(4, out_channels, 4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.down(x))


def test_tiling_reads_what_a_network_of_your_own_declares(tmp_path: Path) -> None:
    """Tiling asks the network for its size multiple and nothing else of its design (no
    base_channels or depth): without one, each picture is restored whole, in one pass."""
    torch.manual_seed(0)
    conv = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 1}
    plain = Denoiser(Design(net={**conv, "kernel_size": 3, "padding": 1})).eval()
    assert default_tiling(plain) == WHOLE_TILING
    assert "torch.nn.Conv2d declares no size_multiple" in describe_tiling(plain, WHOLE_TILING)
    image = torch.rand(1, 45, 70)
    check_tiling_memory(tmp_path / "x.png", plain, (45, 70), **WHOLE_TILING)
    with torch.no_grad():
        computed = plain.net(image[None]).clamp(0.0, 1.0)[0]
    assert torch.equal(denoise_image(plain, image), computed)
    denoise_image(plain, image, tile_size=32, overlap=4)  # tiles as set: its own risk

    own = {"_target_": f"{__name__}.Downsampling"}
    declared = Denoiser(Design.from_settings({"net": own})).eval()
    assert default_tiling(declared) == REFERENCE_TILING
    with torch.no_grad():
        whole = declared.denoise(image[None, :, :44, :68])[0]  # multiples of 4: no padding
    tiled = denoise_image(declared, image[:, :44, :68], tile_size=24, overlap=3, batch_size=3)
    assert torch.equal(tiled, whole)  # tiles on its grid of 4 see what the whole image does
