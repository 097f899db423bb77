"""predict and add_noise: every supported image layout, tiling, folder mode and both CLIs."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import lightning
import numpy as np
import pytest
import torch
from conftest import REPO, smooth_images
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from denoise.add_noise import add_noise
from denoise.data.noise import add_salt_and_pepper
from denoise.files.images import ImageError, read_image
from denoise.inference.tiling import default_tiling, denoise_image, tile_spans
from denoise.models.module import DenoisingModule
from denoise.predict import predict


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Run this module's tiny models on one thread: on a busy 2-core machine, two threads
    waiting on each other made the tiny training steps 20 times slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model() -> DenoisingModule:
    """A tiny U-Net trained for a few steps, so that its output follows its input (an
    untrained one returns a near-constant image, against which any tiling would pass)."""
    torch.manual_seed(0)
    model = DenoisingModule(base_channels=4, depth=3, dropout=0.0)
    clean = torch.from_numpy(smooth_images(32)).float()[:, None] / 255
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        noisy = add_salt_and_pepper(clean, 0.1, generator=generator)
        loss = torch.nn.functional.mse_loss(model(noisy), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tiny_model: DenoisingModule, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` as a checkpoint that ``DenoisingModule.load_from_checkpoint`` reads."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save(
        {
            "state_dict": tiny_model.state_dict(),
            "hyper_parameters": dict(tiny_model.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return path


def config(name: str, **settings: object) -> DictConfig:
    """``conf/<name>.yaml`` with ``settings`` as command-line overrides (paths quoted)."""
    overrides = [
        f"{key}='{value}'" if isinstance(value, Path) else f"{key}={value}"
        for key, value in settings.items()
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides)


def run_predict(checkpoint: Path, source: Path, target: Path) -> list[Path]:
    return predict(config("predict", ckpt_path=checkpoint, input=source, output=target))


def run_add_noise(source: Path, target: Path, **settings: object) -> Path:
    return add_noise(config("add_noise", input=source, output=target, **settings))


def noisy_picture(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 smooth pictures with 10% salt-and-pepper, ``(H, W)`` or ``(H, W, channels)``."""
    planes = smooth_images(channels, height, width, seed).astype(np.float32) / 255
    noisy = add_salt_and_pepper(
        torch.from_numpy(planes)[None], 0.1, generator=torch.Generator().manual_seed(seed)
    )[0].numpy()
    pixels = np.rint(noisy * 255).astype(np.uint8)
    return pixels[0] if channels == 1 else pixels.transpose(1, 2, 0)


def expected_output(model: DenoisingModule, array: np.ndarray) -> np.ndarray:
    """What predict must write, worked out without the code under test: each colour plane
    through the model as a grayscale image, alpha copied."""
    has_alpha = array.ndim == 3 and array.shape[-1] in (2, 4)
    colour = array[..., :-1] if has_alpha else array
    scale = np.iinfo(array.dtype).max if array.dtype.kind == "u" else 1.0
    planes = colour.reshape(*colour.shape[:2], -1).transpose(2, 0, 1).astype(np.float32) / scale
    with torch.no_grad():
        restored = model.denoise(torch.from_numpy(planes)[:, None])[:, 0].numpy() * scale
    if array.dtype.kind == "u":
        restored = np.rint(restored)
    restored = restored.transpose(1, 2, 0).reshape(colour.shape).astype(array.dtype)
    return np.concatenate([restored, array[..., -1:]], axis=-1) if has_alpha else restored


GREY = noisy_picture(48, 48)
ODD = noisy_picture(37, 53, seed=1)
RGB = noisy_picture(37, 53, channels=3, seed=2)
ALPHA = np.random.default_rng(3).integers(0, 256, (37, 53), dtype=np.uint8)
LOSSLESS = {
    "face.png": GREY,
    "odd.png": ODD,
    "face.bmp": ODD,
    "photo.png": RGB,
    "deep.png": ODD.astype(np.uint16) * 257 + 100,  # 16-bit grayscale PNG
    "deep.tif": RGB.astype(np.uint16) * 257 + 100,  # 16-bit RGB TIFF
    "scan.tif": GREY.astype(np.float32) / 255,  # float TIFF, kept float32
    "logo.png": np.dstack([RGB, ALPHA]),  # RGBA
    "mark.png": np.dstack([ODD, ALPHA]),  # grey + alpha
}


@pytest.mark.parametrize("name", LOSSLESS)
def test_predict_keeps_size_pixel_type_and_alpha(
    name: str, tiny_model: DenoisingModule, checkpoint: Path, tmp_path: Path
) -> None:
    array = LOSSLESS[name]
    source, target = tmp_path / name, tmp_path / "out" / f"clean{Path(name).suffix}"
    iio.imwrite(source, array)

    assert run_predict(checkpoint, source, target) == [target]

    written = iio.imread(target)
    assert written.shape == array.shape and written.dtype == array.dtype
    expected = expected_output(tiny_model, array)
    tolerance = 1e-5 if array.dtype == np.float32 else 1  # one level of rounding
    assert np.abs(written.astype(np.float64) - expected).max() <= tolerance
    assert not np.array_equal(written, array)  # the model did change the picture
    if array.shape[-1] in (2, 4):
        assert np.array_equal(written[..., -1], array[..., -1])  # alpha bit for bit


def test_predict_jpeg_keeps_size_and_type(
    tiny_model: DenoisingModule, checkpoint: Path, tmp_path: Path
) -> None:
    source, target = tmp_path / "photo.jpg", tmp_path / "clean.JPG"
    iio.imwrite(source, RGB)
    run_predict(checkpoint, source, target)
    written = iio.imread(target)
    assert written.shape == RGB.shape and written.dtype == np.uint8
    expected = expected_output(tiny_model, iio.imread(source))
    assert np.abs(written.astype(float) - expected).mean() < 2  # JPEG quality 95


def test_folder_mode_writes_each_image_under_its_name_and_skips_the_rest(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    iio.imwrite(folder / "a.png", GREY)
    iio.imwrite(folder / "b.TIF", RGB)
    iio.imwrite(folder / "nested" / "c.png", GREY)  # folders are not searched
    (folder / "notes.txt").write_text("not a picture")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 8)
    caplog.set_level(logging.INFO, logger="denoise")

    written = run_predict(checkpoint, folder, tmp_path / "out" / "new")

    out = tmp_path / "out" / "new"
    assert written == [out / "a.png", out / "b.TIF"]
    assert sorted(path.name for path in out.iterdir()) == ["a.png", "b.TIF"]
    assert iio.imread(out / "b.TIF").shape == RGB.shape
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("notes.txt" in message for message in warnings)
    assert any("broken.png: not a readable image" in message for message in warnings)
    assert any("a.png -> " in r.getMessage() for r in caplog.records)


def test_folder_without_a_readable_image_is_an_error(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a picture")
    with pytest.raises(ImageError, match=r"docs: no image file in this folder"):
        run_predict(checkpoint, folder, tmp_path / "out")
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match=r"docs: no readable image in this folder"):
        run_predict(checkpoint, folder, tmp_path / "out")


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.txt", b"hello"), ("photo.png", b"\x89PNG\r\n\x1a\n" + b"junk" * 8)],
)
def test_a_file_that_is_no_image_is_named_in_the_error(
    name: str, content: bytes, checkpoint: Path, tmp_path: Path
) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(ImageError, match=rf"{name}: not a readable image"):
        run_predict(checkpoint, source, tmp_path / "clean.png")
    with pytest.raises(ImageError, match=rf"{name}: not a readable image"):
        read_image(source)


def test_paths_that_cannot_work_fail_before_any_work(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "face.png"
    iio.imwrite(source, GREY)
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match=r"missing\.png: no such file or folder"):
        run_predict(checkpoint, tmp_path / "missing.png", tmp_path / "clean.png")
    with pytest.raises(IsADirectoryError, match=r"folder: is a folder; .* name the output file"):
        run_predict(checkpoint, source, tmp_path / "folder")
    with pytest.raises(ImageError, match=r"clean\.txt: not an image file name"):
        run_predict(checkpoint, source, tmp_path / "clean.txt")
    with pytest.raises(ValueError, match="would overwrite the input"):
        run_predict(checkpoint, source, source)
    with pytest.raises(NotADirectoryError, match="output must be a folder"):
        run_predict(checkpoint, tmp_path / "folder", source)
    with pytest.raises(FileNotFoundError, match=r"absent\.ckpt: no such checkpoint"):
        run_predict(tmp_path / "absent.ckpt", source, tmp_path / "clean.png")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.ckpt: not a denoise checkpoint"):
        run_predict(tmp_path / "junk.ckpt", source, tmp_path / "clean.png")
    cfg = config("predict", ckpt_path=checkpoint, output=tmp_path / "clean.png")
    with pytest.raises(ValueError, match=r"missing input; usage: python -m denoise\.predict"):
        predict(cfg)
    assert not (tmp_path / "clean.png").exists()


def test_tiles_with_enough_overlap_match_the_whole_image(tiny_model: DenoisingModule) -> None:
    """The tiny U-Net's output moves up to ~21 px away from an input change (3x3 convs at
    full, 1/2 and 1/4 resolution). 21 px of overlap, rounded up onto the U-Net's grid of 4,
    gives every kept centre all it needs, so tiling changes nothing beyond float rounding
    (measured: 2e-7; 16 px leaves up to 2e-4; tiles off the grid differ by 0.1). Without
    overlap the seams differ by over 0.1, so the comparison can tell."""
    image = torch.from_numpy(noisy_picture(100, 90).astype(np.float32) / 255)[None]
    whole = denoise_image(tiny_model, image)
    assert whole.std() > 0.01  # follows the picture; not a flat output

    tiled = denoise_image(tiny_model, image, tile_size=64, overlap=21, batch_size=5)
    assert tiled.shape == image.shape
    assert (tiled - whole).abs().max() < 1e-5
    seamed = denoise_image(tiny_model, image, tile_size=64, overlap=0)
    assert (seamed - whole).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "multiple"),
    [(100, 64, 24, 4), (1500, 512, 64, 16), (1000, 256, 20, 16), (37, 64, 8, 16)],
)
def test_tile_centres_cover_every_pixel_once(
    size: int, tile: int, overlap: int, multiple: int
) -> None:
    spans = tile_spans(size, tile, overlap, multiple)
    kept = [index for span in spans for index in range(span.keep_start, span.keep_stop)]
    assert kept == list(range(size))
    for span in spans:
        assert span.stop - span.start <= max(tile, size if len(spans) == 1 else 0)
        assert span.start % multiple == 0  # on the U-Net's downsampling grid
        assert span.start <= max(span.keep_start - overlap, 0)
        assert span.stop >= min(span.keep_stop + overlap, size)
    with pytest.raises(ValueError, match="leaves no centre"):
        tile_spans(200, 64, 32, multiple=16)


def test_large_image_runs_in_tiles(tiny_model: DenoisingModule) -> None:
    image = torch.rand(1, 1500, 1500, generator=torch.Generator().manual_seed(5))
    restored = denoise_image(tiny_model, image)
    assert restored.shape == image.shape
    assert torch.isfinite(restored).all() and 0 <= restored.min() <= restored.max() <= 1


def test_channel_handling() -> None:
    torch.manual_seed(1)
    grey_model = DenoisingModule(base_channels=4, depth=3).eval()
    colour_model = DenoisingModule(in_channels=3, out_channels=3, base_channels=4, depth=3).eval()
    rgb, grey = torch.rand(3, 20, 24), torch.rand(1, 20, 24)

    per_channel = grey_model.denoise(rgb[:, None])[:, 0]
    assert torch.allclose(denoise_image(grey_model, rgb), per_channel, atol=1e-6)
    averaged = colour_model.denoise(grey.expand(3, -1, -1)[None])[0].mean(0, keepdim=True)
    assert torch.allclose(denoise_image(colour_model, grey), averaged, atol=1e-6)
    with pytest.raises(ValueError, match="3-channel images and this image has 2 channels"):
        denoise_image(colour_model, torch.rand(2, 20, 24))


def test_reference_tiling_matches_the_function_defaults(tiny_model: DenoisingModule) -> None:
    cfg = config("predict")
    assert all(cfg[key] is None for key in ("tile_size", "overlap", "batch_size"))  # per model
    defaults = inspect.signature(denoise_image).parameters
    for key, value in default_tiling(tiny_model).items():
        assert value == defaults[key].default


GREY_FIELD = np.full((200, 200), 128, dtype=np.uint8)


def test_add_noise_corrupts_the_asked_fraction(tmp_path: Path) -> None:
    source = tmp_path / "grey.png"
    iio.imwrite(source, GREY_FIELD)
    target = run_add_noise(source, tmp_path / "noisy.png", amount=0.3, salt_vs_pepper=0.25)

    noisy = iio.imread(target)
    assert noisy.shape == GREY_FIELD.shape and noisy.dtype == np.uint8
    corrupted = noisy != 128
    assert corrupted.mean() == pytest.approx(0.3, abs=0.01)
    assert set(np.unique(noisy[corrupted])) == {0, 255}
    assert (noisy == 255).sum() / corrupted.sum() == pytest.approx(0.25, abs=0.02)


def test_add_noise_same_seed_same_bytes_other_seed_other_noise(tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    iio.imwrite(source, RGB)
    paths = [
        run_add_noise(source, tmp_path / f"{name}.png", seed=seed)
        for name, seed in (("a", 7), ("b", 7), ("c", 8))
    ]
    first, same, other = (path.read_bytes() for path in paths)
    assert first == same and first != other


def test_add_noise_keeps_16_bits_and_alpha(tmp_path: Path) -> None:
    deep = np.full((40, 30), 30000, dtype=np.uint16)
    iio.imwrite(tmp_path / "deep.png", deep)
    noisy = iio.imread(run_add_noise(tmp_path / "deep.png", tmp_path / "n.png", amount=0.5))
    assert noisy.dtype == np.uint16 and noisy.shape == deep.shape
    assert set(np.unique(noisy)) == {0, 30000, 65535}

    logo = np.dstack([RGB, ALPHA])
    iio.imwrite(tmp_path / "logo.png", logo)
    noisy = iio.imread(run_add_noise(tmp_path / "logo.png", tmp_path / "nl.png", amount=0.5))
    assert noisy.shape == logo.shape and np.array_equal(noisy[..., 3], ALPHA)
    assert (noisy[..., :3] != RGB).mean() > 0.3


def _run_cli(module: str, *settings: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", module, *settings],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_nothing_else_written(folder: Path, expected: set[str]) -> None:
    assert {path.name for path in folder.iterdir()} == expected  # no outputs/, .hydra/, *.log


@pytest.mark.slow
def test_both_command_lines_end_to_end(checkpoint: Path, tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "photo.png", RGB)

    noise = _run_cli(
        "denoise.add_noise", "input=photo.png", "output=noisy.png", "amount=0.3", cwd=tmp_path
    )
    assert noise.returncode == 0, noise.stderr[-2000:]
    assert "photo.png -> noisy.png (53x37 RGB uint8" in noise.stdout

    clean = _run_cli(
        "denoise.predict",
        f"ckpt_path={checkpoint}",
        "input=noisy.png",
        "output=clean.png",
        cwd=tmp_path,
    )
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert "noisy.png -> clean.png (53x37 RGB uint8" in clean.stdout
    where = tmp_path.resolve()  # the absolute paths, whatever folder the command ran from
    assert f"Denoising {where / 'noisy.png'} into {where / 'clean.png'}" in clean.stdout
    assert f"Denoised image written to {where / 'clean.png'}" in clean.stdout
    assert iio.imread(tmp_path / "clean.png").shape == RGB.shape

    failed = _run_cli("denoise.add_noise", "input=absent.png", "output=x.png", cwd=tmp_path)
    assert failed.returncode == 1
    assert "error: absent.png: no such file" in failed.stderr
    assert "Traceback" not in failed.stderr
    _assert_nothing_else_written(tmp_path, {"photo.png", "noisy.png", "clean.png"})


def test_predict_without_a_checkpoint_uses_the_shipped_blind_model(tmp_path: Path) -> None:
    clean = smooth_images(1, 64, 80, seed=9)[0]
    noisy = np.where(np.random.default_rng(9).random(clean.shape) < 0.3, 255, clean)
    noisy = noisy.astype(np.uint8)
    source, target = tmp_path / "noisy.png", tmp_path / "clean.png"
    iio.imwrite(source, noisy)

    predict(config("predict", input=source, output=target))

    restored = iio.imread(target)
    assert restored.shape == clean.shape and restored.dtype == np.uint8
    untouched = noisy != 255
    assert np.array_equal(restored[untouched], noisy[untouched])  # clean pixels kept exactly
    error_before = np.abs(noisy.astype(int) - clean).mean()
    assert np.abs(restored.astype(int) - clean).mean() < error_before / 10


def test_the_shipped_model_denoises_large_images_in_its_own_48_px_tiles(tmp_path: Path) -> None:
    """Trained on whole 48x48 faces, the blind model restores a large image far better in
    48 px tiles than in one pass (denoise/inference/tiling.py has the figures); predict's defaults
    must pick that, and a tiling that is given explicitly must still win."""
    clean = (data_camera()[:192, :192]).astype(np.uint8)
    noisy = np.where(np.random.default_rng(4).random(clean.shape) < 0.02, 255, clean)
    source = tmp_path / "noisy.png"
    iio.imwrite(source, noisy.astype(np.uint8))
    default, whole = tmp_path / "default.png", tmp_path / "whole.png"
    predict(config("predict", input=source, output=default))
    predict(config("predict", input=source, output=whole, tile_size=512))

    def psnr(path: Path) -> float:
        error = (iio.imread(path).astype(float) - clean) ** 2
        return 10 * np.log10(255**2 / error.mean())

    assert psnr(default) > psnr(whole) + 5, (psnr(default), psnr(whole))  # measured: 51.9, 44.1


def data_camera() -> np.ndarray:
    from skimage import data

    return data.camera()
