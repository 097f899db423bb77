"""ONNX Runtime as an inference engine: export, the OnnxDenoiser, its cache, its errors."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from conftest import command_config, python_module, run_command, save_checkpoint

from denoise.data.noise import add_salt_and_pepper
from denoise.inference import engines
from denoise.inference.checkpoints import CheckpointError, load_denoiser
from denoise.inference.engines import OnnxDenoiser, export_onnx, onnx_denoiser
from denoise.inference.export_model import export
from denoise.inference.tiling import denoise_image
from denoise.models.denoiser import Denoiser
from denoise.models.networks import Design
from denoise.models.self_ensemble import self_ensemble
from denoise.runtime.errors import SettingError, UserError, error_lines

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

DESIGNS = {
    # every part that pads or sees the whole image: the backbone (multiple 4), the
    # refiner (its own U-Net), the global context planes
    "corruption_aware": Design.from_settings(
        dict(
            architecture="corruption_aware",
            base_channels=4,
            depth=3,
            dropout=0.0,
            global_context=True,
            refine_channels=4,
        )
    ),
    "unet": Design.from_settings(dict(base_channels=4, depth=3, dropout=0.0)),
}
SIZES = [(1, 16, 16), (2, 17, 30), (3, 5, 3), (1, 40, 9)]  # multiples of 4, and not


def trained_looking(design: Design, seed: int = 0) -> Denoiser:
    """A model of ``design`` with random weights and BatchNorm statistics (the defaults
    would make eval and training mode alike), in eval mode."""
    torch.manual_seed(seed)
    model = Denoiser(design)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Denoiser, Path]]:
    """A model of each design and its ONNX file, exported once for the module's tests."""
    folder = tmp_path_factory.mktemp("exported")
    models = {}
    for name, design in DESIGNS.items():
        model = trained_looking(design)
        path = folder / f"{name}.onnx"
        difference = export_onnx(model, path)
        assert 0 <= difference <= 1e-4
        models[name] = (model, path)
    return models


def noisy_batch(batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(height * 100 + width)
    clean = torch.rand(batch, channels, height, width, generator=generator)
    return add_salt_and_pepper(clean, 0.3, generator=generator)


@pytest.mark.parametrize("architecture", DESIGNS)
def test_the_onnx_file_restores_as_torch_at_any_size(
    architecture: str, exported: dict[str, tuple[Denoiser, Path]]
) -> None:
    model, path = exported[architecture]
    onnx_model = OnnxDenoiser(path)
    assert onnx_model.hparams == model.hparams and type(onnx_model.hparams) is type(model.hparams)
    assert onnx_model.net.size_multiple == model.net.size_multiple == 4
    assert (onnx_model.device, onnx_model.dtype) == (torch.device("cpu"), torch.float32)
    for size in SIZES:
        noisy = noisy_batch(size[0], 1, *size[1:])
        expected, decided = model.denoise_and_decide(noisy)
        restored, judged = onnx_model.denoise_and_decide(noisy)
        assert restored.dtype == torch.float32 and restored.shape == noisy.shape
        torch.testing.assert_close(restored, expected, rtol=0, atol=1e-4)
        if decided is None:
            assert judged is None
        else:
            assert torch.equal(judged, decided)
    assert not model.training, "the export leaves the model in eval mode"


@pytest.mark.parametrize("views", [1, 8])
def test_denoise_image_with_onnx_equals_torch(
    views: int, exported: dict[str, tuple[Denoiser, Path]]
) -> None:
    model, path = exported["corruption_aware"]
    image = noisy_batch(1, 1, 37, 50)[0]
    tiling = {"tile_size": 24, "overlap": 4, "batch_size": 3}  # several tiles, and odd ones
    expected = denoise_image(self_ensemble(model, views), image, **tiling)
    restored = denoise_image(self_ensemble(OnnxDenoiser(path), views), image, **tiling)
    torch.testing.assert_close(restored, expected, rtol=0, atol=1e-4)


def test_a_checkpoint_is_converted_once_and_then_read_from_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = trained_looking(DESIGNS["corruption_aware"])
    checkpoint = save_checkpoint(model, tmp_path / "best.ckpt")
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="denoise.inference.engines"):
        first = onnx_denoiser(checkpoint, 2, cache)
    assert f"Converting {checkpoint} to ONNX once (cached in {cache / 'onnx'})" in caplog.text
    assert first.views == 2 and first.inner.views == 1  # the engine, wrapped
    (cached,) = (cache / "onnx").iterdir()
    assert cached.suffix == ".onnx"

    def no_conversion(*_: object) -> float:
        raise AssertionError("converted again")

    monkeypatch.setattr(engines, "export_onnx", no_conversion)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="denoise.inference.engines"):
        again = onnx_denoiser(checkpoint, 1, cache)
    assert "Converting" not in caplog.text
    noisy = noisy_batch(1, 1, 21, 19)
    torch.testing.assert_close(again.denoise(noisy), model.denoise(noisy), rtol=0, atol=1e-4)

    monkeypatch.undo()  # other weights in the same file: converted anew
    save_checkpoint(trained_looking(DESIGNS["corruption_aware"], seed=5), checkpoint)
    onnx_denoiser(checkpoint, 1, cache)
    assert len(list((cache / "onnx").iterdir())) == 2


@pytest.mark.slow
def test_export_format_onnx_writes_a_file_onnx_denoiser_opens(tmp_path: Path) -> None:
    model = trained_looking(DESIGNS["corruption_aware"])
    checkpoint = save_checkpoint(model, tmp_path / "best.ckpt")
    output = tmp_path / "exported" / "model.onnx"
    command = python_module(
        "denoise.export", "format=onnx", f"ckpt_path={checkpoint}", f"output={output}"
    )
    result = run_command(command, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Wrote {output} (" in result.stdout
    assert "differs from PyTorch's by at most" in result.stdout
    opened = onnx_denoiser(output, 1, tmp_path / "unused-cache")
    assert opened.hparams == model.hparams
    assert not (tmp_path / "unused-cache").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.ckpt", "exported"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["format=onnx", "weights=natural", "output={tmp}/m.ckpt"],
         "output={tmp}/m.ckpt: name a .onnx file to write"),
        (["format=onnx", "weights=natural", "ckpt_path={tmp}/x.ckpt", "output={tmp}/m.onnx"],
         "ckpt_path={tmp}/x.ckpt and weights=natural: give one of them, not 2"),
        (["ckpt_path={tmp}/x.ckpt", "output={tmp}/m.ckpt"],
         "ckpt_path={tmp}/x.ckpt: format=ckpt exports a training run folder (run_dir), whose "
         "model card it writes; format=onnx also takes a checkpoint file or a shipped model"),
        (["format=onnx", "output={tmp}/m.onnx"], "missing run_dir"),
        (["format=tflite", "weights=natural", "output={tmp}/m.onnx"],
         "format=tflite: must be one of ckpt, onnx"),
    ],
)  # fmt: skip
def test_export_settings_are_one_line_each(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = command_config("export", *(override.format(tmp=tmp_path) for override in overrides))
    with pytest.raises(SettingError) as refused:
        export(cfg)
    assert str(refused.value) == message.format(tmp=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_differs_from_torch_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "TOLERANCE", -1.0)
    path = tmp_path / "model.onnx"
    with pytest.raises(UserError, match=r"not written: the ONNX export differs from PyTorch"):
        export_onnx(trained_looking(DESIGNS["unet"]), path)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_onnx_file_is_one_line_naming_it(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(CheckpointError) as refused:
        onnx_denoiser(garbage, 1, tmp_path)
    (line,) = error_lines(refused.value)
    assert line.startswith(f"error: {garbage}: not an ONNX model (")

    foreign = tmp_path / "foreign.onnx"  # a real ONNX model, not of denoise.export
    torch.onnx.export(torch.nn.Conv2d(1, 1, 3), (torch.rand(1, 1, 8, 8),), foreign, dynamo=False)
    with pytest.raises(CheckpointError) as refused:
        onnx_denoiser(foreign, 1, tmp_path)
    assert error_lines(refused.value) == [
        f"error: {foreign}: not an ONNX file of denoise.export (no model design in its metadata)"
    ]

    with pytest.raises(CheckpointError, match="no such ONNX file"):
        onnx_denoiser(tmp_path / "missing.onnx", 1, tmp_path)


def test_the_design_travels_in_the_onnx_metadata(
    exported: dict[str, tuple[Denoiser, Path]],
) -> None:
    path = exported["unet"][1]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    stored = json.loads(session.get_modelmeta().custom_metadata_map[engines.HYPERPARAMETERS_KEY])
    assert stored == asdict(DESIGNS["unet"])


def test_without_onnxruntime_the_engine_is_a_setting_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    with pytest.raises(SettingError) as refused:
        onnx_denoiser(tmp_path / "model.onnx", 1, tmp_path)
    assert error_lines(refused.value) == [
        "error: engine=onnxruntime: onnxruntime is not installed",
        "pip install onnxruntime, or use engine=torch",
    ]


@pytest.mark.slow
def test_the_readme_export_of_the_natural_model_restores_as_pytorch_does(tmp_path: Path) -> None:
    """README (Speed): ``python -m denoise.export format=onnx weights=natural output=…``."""
    output = tmp_path / "natural.onnx"
    command = python_module("denoise.export", "format=onnx", "weights=natural", f"output={output}")
    result = run_command(command, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    exported = onnx_denoiser(output, 1, tmp_path / "unused-cache")
    shipped = load_denoiser(None, "cpu", weights="natural")
    noisy = noisy_batch(1, 1, 45, 37)
    torch.testing.assert_close(exported.denoise(noisy), shipped.denoise(noisy), rtol=0, atol=1e-4)
