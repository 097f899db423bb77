"""The Python API (issue 29): ``from denoise import restore, Denoiser, add_salt_and_pepper``.

Each kind of picture comes back in its own type, layout and pixel type; the API restores
exactly as ``predict`` does and adds exactly ``add_noise``'s noise; bad input is a TypeError
or ValueError that says what is accepted; ``import denoise`` and a restore import neither
Lightning nor Hydra; the examples of docs/python.md run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import child_env, command_config
from PIL import Image

import denoise
from denoise import Denoiser, add_salt_and_pepper, restore
from denoise.data.noisy_files import add_noise
from denoise.files.images import read_image
from denoise.inference import restorer as restorer_module
from denoise.inference.restore_files import predict
from denoise.inference.restorer import DEFAULTS, PictureRestorer
from denoise.runtime import memory
from denoise.runtime.memory import FreeMemory

DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def _picture(*shape: int, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """A smooth picture with noise on it, of ``shape`` (H, W[, C]) and ``dtype``."""
    rows, cols = np.meshgrid(np.linspace(0.2, 0.8, shape[0]), np.linspace(0.3, 0.7, shape[1]))
    clean = (rows * cols).T.reshape(*shape[:2], *([1] * (len(shape) - 2)))
    clean = np.broadcast_to(clean, shape) * np.linspace(1.0, 0.8, shape[2] if len(shape) > 2 else 1)
    if np.issubdtype(dtype, np.integer):
        clean = np.rint(clean * np.iinfo(dtype).max).astype(dtype)
    return add_salt_and_pepper(np.ascontiguousarray(clean, dtype=dtype), 0.2, seed=seed)


@pytest.fixture(scope="module")
def natural() -> Denoiser:
    return Denoiser.from_pretrained("natural", self_ensemble=1, device="cpu")


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((12, 10), np.uint8),
        ((12, 10, 1), np.uint8),
        ((12, 10, 2), np.uint8),
        ((12, 10, 3), np.uint8),
        ((12, 10, 4), np.uint16),
        ((12, 10), np.float32),
        ((12, 10, 3), np.float64),
    ],
)
def test_a_numpy_picture_comes_back_in_its_shape_and_type(
    natural: Denoiser, shape: tuple[int, ...], dtype: type
) -> None:
    noisy = _picture(*shape, dtype=dtype)
    restored = natural(noisy)
    assert isinstance(restored, np.ndarray)
    assert (restored.shape, restored.dtype) == (noisy.shape, noisy.dtype)
    assert not np.array_equal(restored, noisy)  # it did restore
    if shape[-1] in (2, 4):
        np.testing.assert_array_equal(restored[..., -1], noisy[..., -1])  # alpha untouched


@pytest.mark.parametrize(
    "mode, restored_mode", [("L", "L"), ("RGB", "RGB"), ("RGBA", "RGBA"), ("P", "RGB")]
)
def test_a_pil_image_keeps_its_mode_as_predict_keeps_it(
    natural: Denoiser, mode: str, restored_mode: str
) -> None:
    image = Image.fromarray(_picture(12, 10, 3)).convert(mode)
    restored = natural(image)
    assert isinstance(restored, Image.Image)
    assert (restored.mode, restored.size) == (restored_mode, image.size)


def test_a_tensor_is_restored_on_its_device_in_its_dtype_as_its_array_is(
    natural: Denoiser,
) -> None:
    array = _picture(12, 10, 3, dtype=np.float32)
    tensor = torch.from_numpy(array).permute(2, 0, 1).to(torch.float64)
    restored = natural(tensor)
    assert (restored.shape, restored.dtype, restored.device) == (
        tensor.shape,
        tensor.dtype,
        tensor.device,
    )
    expected = natural(array)
    np.testing.assert_allclose(restored.permute(1, 2, 0).numpy(), expected, atol=1e-7)
    grey = natural(tensor[:1])
    np.testing.assert_allclose(grey[0].numpy(), natural(array[..., 0]), atol=1e-7)


def test_a_batch_and_a_list_are_restored_picture_by_picture(natural: Denoiser) -> None:
    first, second = (
        torch.from_numpy(_picture(12, 10, 3, dtype=np.float32, seed=seed)).permute(2, 0, 1)
        for seed in (1, 2)
    )
    batch = natural(torch.stack([first, second]))
    assert batch.shape == (2, 3, 12, 10)
    singles = natural([first, second])
    assert isinstance(singles, list) and len(singles) == 2
    for restored, single, alone in zip(batch, singles, (first, second), strict=True):
        torch.testing.assert_close(restored, single)
        torch.testing.assert_close(single, natural(alone))


def test_a_denoiser_loads_each_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Path] = []
    load = restorer_module.load_denoiser

    def counting(path, *args, **kwargs):
        loaded.append(Path(path).name)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(restorer_module, "load_denoiser", counting)
    denoiser = Denoiser.from_pretrained("natural", self_ensemble=1)
    for seed in range(3):
        denoiser(_picture(8, 8, seed=seed))
        denoiser(_picture(8, 8, 3, seed=seed))
    assert loaded == ["blind-natural.ckpt", "blind-natural-colour.ckpt"]


def test_restore_is_what_predict_writes_with_the_same_defaults(tmp_path: Path) -> None:
    noisy = _picture(12, 10, 3)
    source, target = tmp_path / "noisy.png", tmp_path / "clean.png"
    iio.imwrite(source, noisy)
    predict(command_config("predict", input=source, output=target))
    np.testing.assert_array_equal(restore(noisy), read_image(target))
    np.testing.assert_array_equal(restore(Image.open(source)), read_image(target))


def test_the_defaults_are_predicts_own() -> None:
    cfg = command_config("predict", input="x.png", output="y.png")
    assert {key: cfg[key] for key in DEFAULTS} == DEFAULTS
    restorer = PictureRestorer()
    settings = ("weights", "device", "precision", "self_ensemble", "engine", "cache_dir")
    assert {key: getattr(restorer, key) for key in settings} == {key: cfg[key] for key in settings}
    assert restorer.tiling == {key: cfg[key] for key in ("tile_size", "overlap", "batch_size")}


def test_faces_and_a_checkpoint_path_name_the_weights() -> None:
    face = _picture(16, 16)
    faces = restore(face, "faces", self_ensemble=1)  # a file's own views are 1, not faces' 2
    shipped = restorer_module.shipped_model("faces").weights
    np.testing.assert_array_equal(restore(face, shipped, self_ensemble=1), faces)
    assert not np.array_equal(faces, restore(face, "natural"))


def test_add_salt_and_pepper_draws_what_add_noise_draws(tmp_path: Path) -> None:
    clean = _picture(12, 10, 3)
    source, target = tmp_path / "clean.png", tmp_path / "noisy.png"
    iio.imwrite(source, clean)
    add_noise(command_config("add_noise", input=source, output=target, amount=0.3, seed=7))
    noisy = add_salt_and_pepper(clean, 0.3, seed=7)
    np.testing.assert_array_equal(noisy, read_image(target))
    pil = add_salt_and_pepper(Image.fromarray(clean), 0.3, seed=7)
    np.testing.assert_array_equal(np.asarray(pil), noisy)
    tensor = torch.from_numpy(clean).permute(2, 0, 1) / 255
    noisy_tensor = add_salt_and_pepper(tensor, 0.3, seed=7)
    assert (noisy_tensor.shape, noisy_tensor.dtype) == (tensor.shape, tensor.dtype)
    as_bytes = np.rint(noisy_tensor.permute(1, 2, 0).numpy() * 255)  # the same elements hit
    np.testing.assert_array_equal(as_bytes, noisy)


def test_add_salt_and_pepper_seeds_batches_and_whole_pixels() -> None:
    clean = torch.full((2, 3, 16, 16), 0.5)
    batch = add_salt_and_pepper(clean, 0.3, seed=1)
    torch.testing.assert_close(batch[0], add_salt_and_pepper(clean[0], 0.3, seed=1))
    assert not torch.equal(batch[0], batch[1])  # one generator runs on through the batch
    assert not torch.equal(add_salt_and_pepper(clean, 0.3), add_salt_and_pepper(clean, 0.3))
    whole = add_salt_and_pepper(clean, 0.3, seed=1, per_channel=False)
    hit = whole != 0.5
    assert hit.any()
    assert torch.equal(hit, hit[:, :1].expand_as(hit))  # every channel of a hit pixel
    assert torch.equal(whole, whole[:, :1].expand_as(whole))  # black or white, not coloured
    assert not torch.equal(batch, batch[:, :1].expand_as(batch))  # per channel by default


BAD_PICTURES = [
    (np.full((6, 6), 1.5, np.float32), ValueError, "lie in [0, 1]"),
    (np.full((6, 6), -0.1), ValueError, "lie in [0, 1]"),
    (np.full((6, 6), np.nan, np.float32), ValueError, "NaN"),
    (np.zeros((6, 6, 4), np.float32), ValueError, "float pictures are grey or RGB"),
    (np.zeros((1, 1), np.uint8), ValueError, "at least 2×2"),
    (np.zeros((1, 1, 3), np.uint8), ValueError, "at least 2×2"),
    (np.zeros((0, 5), np.uint8), ValueError, "empty"),
    (np.zeros((3, 8, 8), np.uint8), ValueError, "array.transpose(1, 2, 0)"),
    (np.zeros((6, 6), np.int64), TypeError, "use uint8 or uint16"),
    (torch.zeros(8, 8), ValueError, "C×H×W or N×C×H×W"),
    (torch.zeros(1, 1, 3, 8, 8), ValueError, "C×H×W or N×C×H×W"),
    (torch.zeros(2, 8, 8), ValueError, "1 (grey) or 3 (RGB) channels"),
    (torch.zeros(0, 3, 8, 8), ValueError, "empty"),
    (torch.full((3, 8, 8), 2.0), ValueError, "lie in [0, 1]"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), TypeError, "float in [0, 1]"),
    ("photo.png", TypeError, "a NumPy array"),
]


@pytest.mark.parametrize("picture, kind, says", BAD_PICTURES)
def test_a_bad_picture_says_what_is_wrong_and_what_is_accepted(
    natural: Denoiser, picture: object, kind: type[Exception], says: str
) -> None:
    for call in (natural, lambda picture: add_salt_and_pepper(picture, 0.1)):
        with pytest.raises(kind) as raised:
            call(picture)
        assert says in str(raised.value)
        assert "Traceback" not in str(raised.value)


def test_bad_weights_and_settings_are_value_or_type_errors(tmp_path: Path) -> None:
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("hello")
    cases = [
        ("naturel", {}, ValueError, "neither a shipped model (faces, natural) nor a checkpoint"),
        (not_a_checkpoint, {}, ValueError, "not a denoise checkpoint"),
        (tmp_path, {}, ValueError, "is a folder"),
        (3, {}, TypeError, "a checkpoint's path"),
        ("natural", {"precision": "fp16"}, ValueError, "must be one of auto, fp32, bf16"),
        ("natural", {"device": "gpu"}, ValueError, "must be auto, cpu, cuda"),
        ("natural", {"self_ensemble": 3}, ValueError, "must be one of 1, 2, 4, 8"),
        ("natural", {"views": 2}, TypeError, "unknown setting views"),
    ]
    for weights, settings, kind, says in cases:
        with pytest.raises(kind, match=re.escape(says)):
            Denoiser.from_pretrained(weights, **settings)  # type: ignore[arg-type]


def test_a_picture_too_large_for_the_memory_is_refused_with_the_fix(
    natural: Denoiser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "free_memory", lambda device="cpu": FreeMemory(10**5, "free"))
    with pytest.raises(ValueError, match=r"^the picture: .*; use a smaller tile_size"):
        natural(_picture(64, 64))


API_RUN = """
import json, sys
import denoise
before = sorted(sys.modules)
import numpy as np
from denoise import restore
restore(np.full((8, 8), 128, np.uint8), self_ensemble=1)
print(json.dumps([before, sorted(sys.modules)]))
"""


def test_importing_denoise_and_restoring_import_neither_lightning_nor_hydra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", API_RUN],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    before, after = (
        {name.split(".")[0] for name in names}
        for names in json.loads(result.stdout.splitlines()[-1])
    )
    assert "torch" not in before  # the public names load on first use
    assert after & {"lightning", "pytorch_lightning", "hydra", "torchmetrics"} == set()


def test_the_public_names_are_listed_and_typed() -> None:
    assert {"Denoiser", "add_salt_and_pepper", "restore"} <= set(denoise.__all__)
    assert {"Denoiser", "add_salt_and_pepper", "restore"} <= set(dir(denoise))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        denoise.nothing  # noqa: B018


def _docs_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOCS_PAGE.read_text(), re.M | re.S)


def test_the_examples_of_the_python_page_run(tmp_path: Path, monkeypatch) -> None:
    examples = _docs_examples()
    assert len(examples) >= 4
    monkeypatch.chdir(tmp_path)
    Image.fromarray(_picture(24, 20, 3)).save("photo.png")  # the file the examples name
    namespace: dict[str, object] = {}
    for example in examples:  # in order, as a reader runs them, in one session
        exec(compile(example, str(DOCS_PAGE), "exec"), namespace)
