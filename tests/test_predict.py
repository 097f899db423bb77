"""predict and add_noise: every supported image layout and Pillow mode, tiling, folder mode,
bad inputs and both CLIs."""

from __future__ import annotations

import inspect
import logging
import os
import re
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from unittest.mock import patch

import imageio.v3 as iio
import numpy as np
import PIL
import pytest
import torch
from conftest import command_config, python_module, run_command, save_checkpoint, smooth_images
from PIL import Image
from test_images_bad_input import chunk, png_header

from denoise.data.noise import add_salt_and_pepper
from denoise.data.noisy_files import add_noise
from denoise.files.images import DEFAULT_MAX_PIXELS, ImageError, pillow_pixels, read_image
from denoise.inference.restore_files import predict
from denoise.inference.shipped import model_views
from denoise.inference.tiling import (
    REFERENCE_TILING,
    TILING_KEYS,
    default_tiling,
    denoise_image,
    tile_spans,
)
from denoise.models.module import DenoisingModule
from denoise.models.self_ensemble import restore_in_views
from denoise.runtime.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


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
    return save_checkpoint(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def run_predict(checkpoint: Path, source: Path, target: Path) -> list[Path]:
    return predict(command_config("predict", ckpt_path=checkpoint, input=source, output=target))


def run_add_noise(source: Path, target: Path, **settings: object) -> Path:
    return add_noise(command_config("add_noise", input=source, output=target, **settings))


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
    through the model as a grayscale image (in each of predict's default views), alpha copied."""
    has_alpha = array.ndim == 3 and array.shape[-1] in (2, 4)
    colour = array[..., :-1] if has_alpha else array
    scale = np.iinfo(array.dtype).max if array.dtype.kind == "u" else 1.0
    planes = colour.reshape(*colour.shape[:2], -1).transpose(2, 0, 1).astype(np.float32) / scale
    # predict's default for a checkpoint of your own (the shipped models' are tested apart)
    views = model_views(
        command_config("predict", input="x.png", output="y.png").self_ensemble, None
    )
    with torch.no_grad():
        restored, _ = restore_in_views(
            lambda view: (model.denoise(view), None), torch.from_numpy(planes)[:, None], views
        )
    restored = restored[:, 0].numpy() * scale
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


def saved(image: Image.Image, name: str, **options: object) -> Callable[[Path], np.ndarray]:
    """What read_image makes of ``image`` saved by Pillow as ``name``."""

    def read(folder: Path) -> np.ndarray:
        image.save(folder / name, **options)
        return read_image(folder / name)

    return read


def in_memory(image: Image.Image) -> Callable[[Path], np.ndarray]:
    """For the modes that no format Pillow writes holds: what read_image makes of the image."""
    return lambda folder: pillow_pixels(image, "in memory")


def palette_image(indices: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    image = Image.frombytes("P", indices.shape[::-1], np.ascontiguousarray(indices).tobytes())
    image.putpalette([value for colour in colours for value in colour])
    return image


def pixels(values: list, dtype: type = np.uint8) -> np.ndarray:
    return np.array(values, dtype=dtype)


INDICES = pixels([[0, 1, 2], [2, 1, 0]])
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
PALETTE_RGB = pixels([[COLOURS[i] for i in row] for row in INDICES.tolist()])
DEEP = pixels([[0, 1, 300], [4000, 65534, 65535]], np.uint16)
FLOAT = pixels([[0.0, 0.25, 0.5], [0.75, 0.125, 1.0]], np.float32)
SOLID_CMYK = np.zeros((16, 32, 4), np.uint8)
SOLID_CMYK[:, :16], SOLID_CMYK[:, 16:] = (0, 255, 255, 0), (255, 255, 0, 0)  # red, blue ink
SOLID_RGB = np.zeros((16, 32, 3), np.uint8)
SOLID_RGB[:, :16], SOLID_RGB[:, 16:] = (255, 0, 0), (0, 0, 255)


def colour_row(mode: str, colours: list[tuple[int, ...]]) -> Image.Image:
    """One row of pixels of known colour, given in ``mode``'s own bytes."""
    data = bytes(value % 256 for colour in colours for value in colour)
    return Image.frombytes(mode, (len(colours), 1), data)


RED_GREEN_WHITE_BLACK = pixels([[(255, 0, 0), (0, 255, 0), (255, 255, 255), (0, 0, 0)]])

# mode -> (how to get what read_image makes of it, the pixels expected, tolerance)
MODES: dict[str, tuple[Callable[[Path], np.ndarray], np.ndarray, float]] = {
    "1": (saved(Image.fromarray(INDICES == 1), "bits.png"), (INDICES == 1) * pixels(255), 0),
    "L": (saved(Image.fromarray(INDICES * 100), "grey.png"), INDICES * 100, 0),
    "LA": (
        saved(Image.fromarray(np.dstack([INDICES, INDICES * 50]), "LA"), "grey_alpha.png"),
        np.dstack([INDICES, INDICES * 50]),
        0,
    ),
    "P": (saved(palette_image(INDICES, COLOURS), "palette.png"), PALETTE_RGB, 0),
    "P, transparent": (
        saved(palette_image(INDICES, COLOURS), "clear.png", transparency=1),
        np.dstack([PALETTE_RGB, np.where(INDICES == 1, 0, 255).astype(np.uint8)]),
        0,
    ),
    "P, grey palette": (
        saved(palette_image(INDICES, [(0, 0, 0), (128, 128, 128), (255, 255, 255)]), "g.bmp"),
        pixels([[0, 128, 255], [255, 128, 0]]),
        0,
    ),
    "PA": (
        saved(
            Image.merge("PA", [palette_image(INDICES, COLOURS), Image.fromarray(INDICES * 9)]),
            "palette_alpha.tif",
        ),
        np.dstack([PALETTE_RGB, INDICES * 9]),
        0,
    ),
    "RGB": (saved(Image.fromarray(PALETTE_RGB), "rgb.png"), PALETTE_RGB, 0),
    "RGBA": (
        saved(Image.fromarray(np.dstack([PALETTE_RGB, INDICES * 9])), "rgba.png"),
        np.dstack([PALETTE_RGB, INDICES * 9]),
        0,
    ),
    "RGB, LZW TIFF (Pillow decodes it)": (
        saved(Image.fromarray(PALETTE_RGB), "lzw.tif", compression="tiff_lzw"),
        PALETTE_RGB,
        0,
    ),
    "RGBa (premultiplied)": (
        in_memory(Image.frombytes("RGBa", (1, 1), bytes([100, 50, 20, 128]))),
        pixels([[[199, 99, 39, 128]]]),  # 100 * 255 / 128 ...
        0,
    ),
    "La (premultiplied)": (
        in_memory(Image.frombytes("La", (1, 1), bytes([100, 128]))),
        pixels([[[199, 128]]]),
        0,
    ),
    "CMYK, JPEG": (saved(Image.fromarray(SOLID_CMYK, "CMYK"), "ink.jpg"), SOLID_RGB, 4),
    "CMYK, TIFF": (
        saved(
            colour_row("CMYK", [(0, 255, 255, 0), (255, 0, 255, 0), (0, 0, 0, 0), (0, 0, 0, 255)]),
            "ink.tif",
        ),
        RED_GREEN_WHITE_BLACK,
        0,
    ),
    "YCbCr": (
        saved(
            colour_row("YCbCr", [(76, 85, 255), (150, 44, 21), (255, 128, 128), (0, 128, 128)]),
            "ycc.tif",
        ),
        RED_GREEN_WHITE_BLACK,
        2,
    ),
    "LAB": (  # L* in 0-255; a*, b* as signed bytes; Pillow's sRGB is within 11 of exact
        saved(
            colour_row("LAB", [(136, 80, 67), (224, -86, 83), (128, 0, 0), (255, 0, 0), (0, 0, 0)]),
            "lab.tif",
        ),
        pixels([[(255, 0, 0), (0, 255, 0), (119, 119, 119), (255, 255, 255), (0, 0, 0)]]),
        12,
    ),
    "HSV": (
        in_memory(colour_row("HSV", [(0, 255, 255), (85, 255, 255), (0, 0, 255), (0, 0, 0)])),
        RED_GREEN_WHITE_BLACK,
        1,
    ),
    "I;16, PNG": (saved(Image.fromarray(DEEP), "deep.png"), DEEP, 0),
    "I;16B, TIFF": (
        saved(Image.frombytes("I;16B", (3, 2), DEEP.astype(">u2").tobytes()), "big_endian.tif"),
        DEEP,
        0,
    ),
    "I;16B": (in_memory(Image.frombytes("I;16B", (3, 2), DEEP.astype(">u2").tobytes())), DEEP, 0),
    "I;16L": (in_memory(Image.frombytes("I;16L", (3, 2), DEEP.astype("<u2").tobytes())), DEEP, 0),
    "I (32-bit), TIFF": (saved(Image.fromarray(DEEP.astype(np.int32)), "i32.tif"), DEEP, 0),
    "I (32-bit), LZW TIFF": (
        saved(Image.fromarray(DEEP.astype(np.int32)), "i32_lzw.tif", compression="tiff_lzw"),
        DEEP,
        0,
    ),
    "F, TIFF": (saved(Image.fromarray(FLOAT), "float.tif"), FLOAT, 0),
    "F, LZW TIFF": (
        saved(Image.fromarray(FLOAT), "float_lzw.tif", compression="tiff_lzw"),
        FLOAT,
        0,
    ),
}


def pillow_reads_its_own(mode: str, name: str, folder: Path) -> bool:
    """Whether this Pillow reads back a picture of ``mode`` it saved as ``name`` (Pillow 12
    writes YCbCr TIFFs it then calls truncated; 13 reads them)."""
    path = folder / f"pillow-{name}"
    Image.new(mode, (3, 2)).save(path)
    try:
        Image.open(path).load()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("mode", MODES)
def test_every_pillow_mode_is_read_as_its_pixels(mode: str, tmp_path: Path) -> None:
    if mode == "YCbCr" and not pillow_reads_its_own(mode, "ycc.tif", tmp_path):
        pytest.skip(f"Pillow {PIL.__version__} cannot read back the YCbCr TIFF it writes")
    read, expected, tolerance = MODES[mode]
    array = read(tmp_path)
    assert array.dtype == expected.dtype and array.shape == expected.shape, (
        array.dtype,
        array.shape,
    )
    assert np.abs(array.astype(np.float64) - expected).max() <= tolerance, array


def test_planar_tiff_is_read_with_its_samples_last(tmp_path: Path) -> None:
    iio.imwrite(
        tmp_path / "planar.tif", RGB.transpose(2, 0, 1), photometric="rgb", planarconfig="separate"
    )
    assert np.array_equal(read_image(tmp_path / "planar.tif"), RGB)


def test_16_bit_colour_png_is_read_as_8_bit_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pillow has no 16-bit colour mode; the high byte is what it keeps."""
    deep = np.dstack([DEEP, DEEP[::-1], DEEP[:, ::-1]])
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in deep)
    header = struct.pack(">IIBBBBB", 3, 2, 16, 2, 0, 0, 0)  # 16-bit RGB
    path = tmp_path / "deep_rgb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    caplog.set_level(logging.WARNING, logger="denoise")
    array = read_image(path)
    assert array.dtype == np.uint8 and np.array_equal(array, (deep >> 8).astype(np.uint8))
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 16-bit colour read as 8-bit, the most Pillow reads; "
        "an uncompressed or deflate TIFF keeps 16 bits"
    ]


def test_predict_turns_a_cmyk_jpeg_into_rgb(
    tiny_model: DenoisingModule, checkpoint: Path, tmp_path: Path
) -> None:
    """Read as RGBA once (alpha 0 everywhere, colours inverted); now as the RGB it shows."""
    source, target = tmp_path / "ink.jpg", tmp_path / "clean.png"  # PNG: compare exactly
    Image.fromarray(SOLID_CMYK, "CMYK").save(source)
    run_predict(checkpoint, source, target)
    written = iio.imread(target)
    assert written.shape == SOLID_RGB.shape and written.dtype == np.uint8
    assert np.abs(written.astype(float) - expected_output(tiny_model, SOLID_RGB)).max() <= 1


def test_add_noise_keeps_the_transparency_of_a_palette_image(tmp_path: Path) -> None:
    source = tmp_path / "clear.png"
    palette_image(np.tile(INDICES, (20, 20)), COLOURS).save(source, transparency=1)
    noisy = iio.imread(run_add_noise(source, tmp_path / "noisy.png", amount=0.5))
    alpha = np.where(np.tile(INDICES, (20, 20)) == 1, 0, 255)
    assert noisy.shape == (40, 60, 4) and np.array_equal(noisy[..., 3], alpha)
    assert (noisy[..., :3] != np.tile(PALETTE_RGB, (20, 20, 1))).mean() > 0.15  # 0 or 255


def test_folder_mode_writes_each_image_under_its_name_and_reports_the_rest(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    iio.imwrite(folder / "a.png", GREY)
    iio.imwrite(folder / "b.TIF", RGB)
    iio.imwrite(folder / "c.png", GREY)
    iio.imwrite(folder / "nested" / "d.png", GREY)  # folders are not searched
    (folder / "notes.txt").write_text("not a picture")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 8)
    out = tmp_path / "out" / "new"
    (out / "c.png").mkdir(parents=True)  # c.png cannot be written: a folder has that name
    caplog.set_level(logging.INFO, logger="denoise")

    summary = f"2 of 4 images denoised into {out}; 2 failed: broken.png, c.png"
    with pytest.raises(UserError, match=f"^{re.escape(summary)}$"):  # after all the others
        run_predict(checkpoint, folder, out)

    assert sorted(path.name for path in out.iterdir()) == ["a.png", "b.TIF", "c.png"]
    assert iio.imread(out / "b.TIF").shape == RGB.shape
    assert list((out / "c.png").iterdir()) == []  # no temporary file left
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"skipping {folder / 'notes.txt'}: not an image file (.png .jpg .jpeg .bmp .tif .tiff)",
        f"skipping {folder / 'broken.png'}: damaged PNG file (truncated)",
        f"skipping {out / 'c.png'}: cannot write the file (a folder has that name)",
    ]
    assert any("a.png -> " in r.getMessage() for r in caplog.records)


def test_folder_mode_counts_and_lists_the_failures(checkpoint: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "docs", tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a picture")
    with pytest.raises(ImageError, match=r"docs: no image file in this folder \(\.png .*\)$"):
        run_predict(checkpoint, folder, out)
    for index in range(7):
        (folder / f"b{index}.png").write_bytes(b"not a png")
    names = "b0.png, b1.png, b2.png, b3.png, b4.png and 2 more"
    summary = f"0 of 7 images denoised into {out}; 7 failed: {names}"
    with pytest.raises(UserError, match=f"^{re.escape(summary)}$"):
        run_predict(checkpoint, folder, out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("notes.txt", b"hello", "not an image file (not PNG, JPEG, BMP or TIFF data)"),
        ("photo.png", b"\x89PNG\r\n\x1a\n" + b"junk" * 8, "damaged PNG file (truncated)"),
        (
            "huge.png",
            png_header(12000, 12000),
            "12000x12000 is 144 megapixels, over max_pixels=50000000; "
            "set max_pixels higher, or to null for no limit",
        ),
    ],
)
def test_a_file_that_is_no_image_is_named_in_the_error(
    name: str, content: bytes, problem: str, checkpoint: Path, tmp_path: Path
) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(ImageError, match=f"^{re.escape(f'{source}: {problem}')}$"):
        run_predict(checkpoint, source, tmp_path / "clean.png")
    with pytest.raises(ImageError, match=f"^{re.escape(f'{source}: {problem}')}$"):
        run_add_noise(source, tmp_path / "noisy.png")
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]


def test_a_folder_named_like_an_image_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "x.png"
    folder.mkdir()
    message = f"{folder}: no image file in this folder (.png .jpg .jpeg .bmp .tif .tiff)"
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        predict(command_config("predict", input=folder, output=tmp_path / "out"))
    message = f"{folder}: is a folder; this command takes an image file"
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        run_add_noise(folder, tmp_path / "noisy.png")


def test_max_pixels_is_a_setting_of_both_commands(checkpoint: Path, tmp_path: Path) -> None:
    assert (
        command_config("predict").max_pixels
        == command_config("add_noise").max_pixels
        == DEFAULT_MAX_PIXELS
    )
    source = tmp_path / "face.png"
    iio.imwrite(source, GREY)  # 48x48: 2304 pixels
    over = (
        "48x48 is 0.0023 megapixels, over max_pixels=2000; "
        "set max_pixels higher, or to null for no limit"
    )
    with pytest.raises(ImageError, match=f"^{re.escape(f'{source}: {over}')}$"):
        predict(
            command_config(
                "predict",
                ckpt_path=checkpoint,
                input=source,
                output=tmp_path / "a.png",
                max_pixels=2000,
            )
        )
    with pytest.raises(ImageError, match=f"^{re.escape(f'{source}: {over}')}$"):
        run_add_noise(source, tmp_path / "b.png", max_pixels=2000)
    with pytest.raises(
        UserError, match=r"^max_pixels=0: must be a whole number of at least 1 \(or null\)$"
    ):
        run_add_noise(source, tmp_path / "b.png", max_pixels=0)
    run_add_noise(source, tmp_path / "b.png", max_pixels=2304)
    predict(
        command_config(
            "predict",
            ckpt_path=checkpoint,
            input=source,
            output=tmp_path / "a.png",
            max_pixels="null",
        )
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png", "b.png", "face.png"]


def test_paths_that_cannot_work_fail_before_any_work(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "face.png"
    iio.imwrite(source, GREY)
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match=r"missing\.png: no such file or folder"):
        run_predict(checkpoint, tmp_path / "missing.png", tmp_path / "clean.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    with pytest.raises(UserError, match=r"loop\.png: symbolic link loop$"):
        run_predict(checkpoint, tmp_path / "loop.png", tmp_path / "clean.png")
    os.mkfifo(tmp_path / "pipe.png")  # never opened: opening would block
    with pytest.raises(UserError, match=r"pipe\.png: is a FIFO \(named pipe\), not a file$"):
        run_predict(checkpoint, tmp_path / "pipe.png", tmp_path / "clean.png")
    with pytest.raises(UserError, match=r"folder: is a folder; .* name the output file"):
        run_predict(checkpoint, source, tmp_path / "folder")
    with pytest.raises(ImageError, match=r"clean\.txt: not an image file name"):
        run_predict(checkpoint, source, tmp_path / "clean.txt")
    with pytest.raises(UserError, match="would overwrite the input"):
        run_predict(checkpoint, source, source)
    with pytest.raises(UserError, match="output must be a folder"):
        run_predict(checkpoint, tmp_path / "folder", source)
    with pytest.raises(UserError, match=r"absent\.ckpt: no such checkpoint"):
        run_predict(tmp_path / "absent.ckpt", source, tmp_path / "clean.png")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"junk\.ckpt: not a denoise checkpoint"):
        run_predict(tmp_path / "junk.ckpt", source, tmp_path / "clean.png")
    cfg = command_config("predict", ckpt_path=checkpoint, output=tmp_path / "clean.png")
    with pytest.raises(UserError, match=r"^missing input$"):
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
    with pytest.raises(UserError, match="leaves no centre"):
        tile_spans(200, 64, 32, multiple=16)


def test_large_image_runs_in_tiles(tiny_model: DenoisingModule) -> None:
    image = torch.rand(1, 1500, 1500, generator=torch.Generator().manual_seed(5))
    restored = denoise_image(tiny_model, image)
    assert restored.shape == image.shape
    assert torch.isfinite(restored).all() and 0 <= restored.min() <= restored.max() <= 1


def test_many_tiles_show_a_progress_bar_and_few_do_not(
    tiny_model: DenoisingModule, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("denoise.inference.tiling.PROGRESS_DELAY_S", 0.0)  # at once, for the test
    image = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(5))
    denoise_image(tiny_model, image, tile_size=16, overlap=0, batch_size=8)  # 16 tiles
    assert "tiles" not in capsys.readouterr().err
    large = torch.rand(1, 128, 128, generator=torch.Generator().manual_seed(5))
    denoise_image(tiny_model, large, tile_size=16, overlap=0, batch_size=8)  # 64 tiles
    shown = capsys.readouterr().err
    assert "tiles:" in shown and "/64 [" in shown  # cleared when done (leave=False)


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


def test_tiling_left_unset_is_the_models_own(tiny_model: DenoisingModule) -> None:
    """One owner of the tiling defaults: the config and denoise_image leave them unset, and
    unset is :func:`default_tiling`'s."""
    cfg = command_config("predict")
    assert all(cfg[key] is None for key in TILING_KEYS)  # per model
    defaults = inspect.signature(denoise_image).parameters
    assert all(defaults[key].default is None for key in TILING_KEYS)
    assert default_tiling(tiny_model) == REFERENCE_TILING
    image = torch.rand(1, 70, 90, generator=torch.Generator().manual_seed(2))
    small = {"tile_size": 32, "overlap": 8, "batch_size": 2}  # tiles that change the result
    with patch.dict(REFERENCE_TILING, small):
        own = denoise_image(tiny_model, image)
    assert torch.equal(own, denoise_image(tiny_model, image, **small))
    assert not torch.equal(own, denoise_image(tiny_model, image))


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
    return run_command(python_module(module, *settings), cwd, "HYDRA_FULL_ERROR")


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


def _assert_refused(
    result: subprocess.CompletedProcess[str], message: str, folder: Path, expected: set[str]
) -> None:
    """Exit status 1, the error as stderr's last line, no traceback, nothing written (no
    output, no temporary file)."""
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == f"error: {message}"
    assert "Traceback" not in result.stderr
    _assert_nothing_else_written(folder, expected)


@pytest.mark.slow
def test_command_lines_refuse_a_bad_image_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("hello, not a picture")
    (tmp_path / "huge.png").write_bytes(png_header(12000, 12000))  # 144 megapixels, 67 bytes
    files = {"fake.png", "huge.png"}

    args = (f"ckpt_path={checkpoint}", "input=fake.png", "output=clean.png")
    result = _run_cli("denoise.predict", *args, cwd=tmp_path)
    _assert_refused(
        result, "fake.png: not an image file (not PNG, JPEG, BMP or TIFF data)", tmp_path, files
    )

    result = _run_cli("denoise.add_noise", "input=huge.png", "output=noisy.png", cwd=tmp_path)
    message = (
        "huge.png: 12000x12000 is 144 megapixels, over max_pixels=50000000; "
        "set max_pixels higher, or to null for no limit"
    )
    _assert_refused(result, message, tmp_path, files)


@pytest.mark.slow
def test_folder_command_line_goes_on_after_a_failure_and_exits_1(
    checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    iio.imwrite(tmp_path / "in" / "a.png", GREY)
    (tmp_path / "in" / "b.png").write_bytes(b"")
    iio.imwrite(tmp_path / "in" / "c.png", GREY)
    (tmp_path / "out" / "c.png").mkdir(parents=True)  # in the way of the output c.png

    result = _run_cli(
        "denoise.predict", f"ckpt_path={checkpoint}", "input=in", "output=out", cwd=tmp_path
    )

    out = tmp_path.resolve() / "out"
    _assert_refused(
        result,
        f"1 of 3 images denoised into {out}; 2 failed: b.png, c.png",
        tmp_path,
        {"in", "out"},
    )
    assert "skipping in/b.png: not an image file (empty file)" in result.stdout
    assert "skipping out/c.png: cannot write the file (a folder has that name)" in result.stdout
    assert {path.name for path in (tmp_path / "out").iterdir()} == {"a.png", "c.png"}
    assert list((tmp_path / "out" / "c.png").iterdir()) == []
    assert iio.imread(tmp_path / "out" / "a.png").shape == GREY.shape


def test_predict_with_weights_faces_uses_the_shipped_face_model(tmp_path: Path) -> None:
    clean = smooth_images(1, 64, 80, seed=9)[0]
    noisy = np.where(np.random.default_rng(9).random(clean.shape) < 0.3, 255, clean)
    noisy = noisy.astype(np.uint8)
    source, target = tmp_path / "noisy.png", tmp_path / "clean.png"
    iio.imwrite(source, noisy)

    predict(command_config("predict", weights="faces", input=source, output=target))

    restored = iio.imread(target)
    assert restored.shape == clean.shape and restored.dtype == np.uint8
    untouched = noisy != 255
    assert np.array_equal(restored[untouched], noisy[untouched])  # clean pixels kept exactly
    error_before = np.abs(noisy.astype(int) - clean).mean()
    assert np.abs(restored.astype(int) - clean).mean() < error_before / 10


def test_the_face_model_denoises_large_images_in_its_own_48_px_tiles(tmp_path: Path) -> None:
    """Trained on whole 48x48 faces, the blind model restores a large image far better in
    48 px tiles than in one pass (denoise/inference/tiling.py has the figures); predict's defaults
    must pick that, and a tiling that is given explicitly must still win."""
    clean = data_camera().astype(np.uint8)
    draw = np.random.default_rng(4).random((2, *clean.shape))
    noisy = np.where(draw[0] < 0.02, np.where(draw[1] < 0.5, 255, 0), clean)
    source = tmp_path / "noisy.png"
    iio.imwrite(source, noisy.astype(np.uint8))
    default, whole = tmp_path / "default.png", tmp_path / "whole.png"
    predict(command_config("predict", weights="faces", input=source, output=default))
    predict(command_config("predict", weights="faces", input=source, output=whole, tile_size=512))

    def psnr(path: Path) -> float:
        error = (iio.imread(path).astype(float) - clean) ** 2
        return 10 * np.log10(255**2 / error.mean())

    assert psnr(default) > psnr(whole) + 1.5, (psnr(default), psnr(whole))  # measured: 46.5, 43.4


def data_camera() -> np.ndarray:
    from skimage import data

    return data.camera()


@pytest.mark.parametrize(("orientation", "turn"), [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied_so_the_output_is_upright(
    tmp_path: Path, orientation: int, turn: int
) -> None:
    stored = np.arange(6 * 4, dtype=np.uint8).reshape(4, 6) * 10  # as the sensor stored it
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif)
    np.testing.assert_array_equal(read_image(path), np.rot90(stored, k=turn))
