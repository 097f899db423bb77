"""ONNX Runtime as an inference engine: a denoiser exported once to a dynamic-size ONNX file,
then run by ONNX Runtime behind the interface tiling and ``predict`` use from a
:class:`~denoise.models.denoiser.Denoiser`.

The file is a trace of the network's ``restore_and_decide`` (its noise decisions too, where it
makes them). A trace records only the branch its example took, and the U-Net pads an input
up to its size multiple only where it needs to: the example therefore has a height and width
that need padding (odd sizes, which no power-of-two multiple divides), so that the padding,
by amounts computed from the input's shape, is in the graph, and is nil where none is needed.
Padding outside the network instead would be wrong for the corruption-aware design, whose
first guess and candidate mask see the unpadded image.

An ``.onnx`` file says what it is: the design's hyperparameters are in its metadata, so it
loads without the checkpoint it came from. Every export is checked against PyTorch before
it is written.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from denoise.data.noise import add_salt_and_pepper
from denoise.files.atomic import atomic_file
from denoise.files.paths import absolute
from denoise.files.reading import regular_file
from denoise.inference.checkpoints import (
    CheckpointError,
    checkpoint_file,
    model_from_checkpoint,
    model_from_hyper_parameters,
    read_checkpoint,
)
from denoise.inference.tiling import size_multiple
from denoise.models.denoiser import Denoiser, Hyperparameters, Restorer, Restoring
from denoise.models.self_ensemble import self_ensemble
from denoise.runtime.errors import SettingError, UserError

log = logging.getLogger(__name__)

OPSET = 17
INPUT = "noisy"
RESTORED, JUDGED_NOISE = "restored", "judged_noise"
HYPERPARAMETERS_KEY = "denoise.hyperparameters"  # metadata_props: the design, as JSON
EXAMPLE_NOISE = 0.3  # the share of pixels of the export's examples set to black or white
TOLERANCE = 1e-4  # largest difference to PyTorch an export may have
# Part of a cached conversion's name: raise it when what export_onnx writes changes.
EXPORT_VERSION = 1
CACHE_FOLDER = "onnx"
# The inference engines predict offers (`engine=`), the one place their names are spelt.
ONNXRUNTIME = "onnxruntime"
ENGINES = ("torch", ONNXRUNTIME)
ENGINE = f"engine={ONNXRUNTIME}"
ENGINE_FIX = "pip install onnxruntime, or use engine=torch"
CONVERT_FIX = "pip install onnx (it converts a checkpoint to ONNX once), or use engine=torch"
EXPORT_FIX = "pip install onnx onnxruntime"


def import_engine(module: str, setting: str, fix: str) -> ModuleType:
    """``module`` (onnxruntime, onnx), or where it is not installed the one-line setting error
    naming ``setting``: both are optional dependencies."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SettingError(f"{setting}: {module} is not installed", fix=fix) from None


class _Traced(nn.Module):
    """What the ONNX file computes: the network's restored images, and its noise decisions
    where it makes them."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, noisy: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        decide = getattr(self.net, "restore_and_decide", None)
        return self.net(noisy) if decide is None else decide(noisy)


def odd_example(model: Denoiser, batch: int, height: int, width: int) -> torch.Tensor:
    """A ramp under salt-and-pepper noise, ``height`` x ``width``: odd sizes, so that every
    U-Net inside the model pads it (their size multiples are powers of two)."""
    assert height % 2 and width % 2, "the example must need padding"
    generator = torch.Generator().manual_seed(0)
    shape = (batch, model.hparams.net["in_channels"], height, width)
    ramp = torch.linspace(0.1, 0.9, width).expand(shape)
    clean = (ramp + 0.05 * torch.rand(shape, generator=generator)).clamp(0.0, 1.0)
    noisy = add_salt_and_pepper(clean, EXAMPLE_NOISE, generator=generator)
    return noisy.to(model.device)


def export_onnx(model: Denoiser, path: Path) -> float:
    """Write ``model.net`` (put in eval mode) to ``path`` as an ONNX file for any batch,
    height and width, with the design in its metadata; return the largest difference of its
    output to PyTorch's on an example it was not traced with. Above :data:`TOLERANCE` nothing
    is written and the export is a UserError."""
    onnx = import_engine("onnx", "format=onnx", EXPORT_FIX)
    onnxruntime = import_engine("onnxruntime", "format=onnx", EXPORT_FIX)
    # in eval mode as a whole: the exporter ends by putting it back into the mode it had
    traced = _Traced(model.eval().net).eval()
    multiple = size_multiple(model) or 1
    decides = getattr(model.net, "restore_and_decide", None) is not None
    names = [RESTORED, JUDGED_NOISE] if decides else [RESTORED]
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the tracer's notes on the padding branch: see module doc
        warnings.simplefilter("ignore")
        torch.onnx.export(
            traced,
            (odd_example(model, 1, 2 * multiple + 1, 2 * multiple + 3),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=names,
            dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in [INPUT, *names]},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    design = json.dumps(dict(model.hparams), sort_keys=True)
    onnx.helper.set_model_props(proto, {HYPERPARAMETERS_KEY: design})
    data = proto.SerializeToString()

    example = odd_example(model, 2, 3 * multiple + 1, 2 * multiple + 5)
    with torch.no_grad():
        expected = _first(traced(example)).float().cpu().numpy()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    restored = session.run([RESTORED], {INPUT: example.float().cpu().numpy()})[0]
    difference = float(np.abs(restored - expected).max())
    if not difference <= TOLERANCE:  # NaN too
        raise UserError(
            f"{path}: not written: the ONNX export differs from PyTorch by up to "
            f"{difference:.2g} (more than {TOLERANCE:g})"
        )
    with atomic_file(path) as handle:
        handle.write(data)
    return difference


def _first(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return outputs[0] if isinstance(outputs, tuple) else outputs


class OnnxNetwork:
    """An ONNX Runtime session in the place of ``Denoiser.net``: what tiling reads of the
    network (``size_multiple``) and what restoring calls (``restore_and_decide``)."""

    def __init__(self, session: Any, size_multiple: int | None) -> None:
        self.session = session
        self.size_multiple = size_multiple
        self.decides = JUDGED_NOISE in {output.name for output in session.get_outputs()}

    def restore_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        names = [RESTORED, JUDGED_NOISE] if self.decides else [RESTORED]
        outputs = self.session.run(names, {INPUT: noisy.float().cpu().numpy()})
        restored = torch.from_numpy(outputs[0])
        return restored, torch.from_numpy(outputs[1]) if self.decides else None


class OnnxDenoiser(Restoring):
    """A denoiser exported by :func:`export_onnx`, run by ONNX Runtime on the CPU in float32:
    it restores as :class:`~denoise.models.denoiser.Denoiser` does (clipped; modes such as
    :class:`~denoise.models.self_ensemble.SelfEnsemble` wrap it), by the same
    :class:`~denoise.models.denoiser.Restoring` code."""

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, path: Path) -> None:
        onnxruntime = import_engine("onnxruntime", ENGINE, ENGINE_FIX)
        path = regular_file(path, CheckpointError, missing="no such ONNX file")
        options = onnxruntime.SessionOptions()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        options.intra_op_num_threads = cores or 1
        try:
            session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # an untrusted file: its parser may fail in any way
            first = (str(error).strip() or type(error).__name__).splitlines()[0][:200]
            raise CheckpointError(f"{path}: not an ONNX model ({first})") from None
        design = _stored_design(session.get_modelmeta().custom_metadata_map, path)
        with torch.device("meta"):  # the design's checks and size multiple, without memory
            described = model_from_hyper_parameters(design, path)
        self.hparams: Hyperparameters = described.hparams
        self.net = OnnxNetwork(session, size_multiple(described))  # type: ignore[assignment]
        self.memory_format = torch.contiguous_format
        self.threads = options.intra_op_num_threads
        self.path = path


def _stored_design(metadata: Mapping[str, str], path: Path) -> dict[str, Any]:
    """The hyperparameters :func:`export_onnx` stored in the file's metadata."""
    try:
        design = json.loads(metadata[HYPERPARAMETERS_KEY])
    except (KeyError, ValueError):
        design = None
    if not isinstance(design, dict):
        raise CheckpointError(
            f"{path}: not an ONNX file of denoise.export (no model design in its metadata)"
        )
    return design


def onnx_denoiser(
    checkpoint: str | os.PathLike, views: int, cache_dir: str | os.PathLike
) -> Restorer:
    """``checkpoint`` run by ONNX Runtime, averaged over ``views`` orientations: an ``.onnx``
    file as it is; a checkpoint converted once into ``cache_dir/onnx/``, named by its bytes,
    and reused from there."""
    import_engine("onnxruntime", ENGINE, ENGINE_FIX)
    checkpoint = Path(checkpoint)
    if checkpoint.suffix != ".onnx":
        checkpoint = converted_file(checkpoint_file(checkpoint), Path(cache_dir).expanduser())
    model = OnnxDenoiser(checkpoint)
    log.info(
        "Inference with ONNX Runtime on %d CPU thread%s, in fp32",
        model.threads,
        "s" if model.threads != 1 else "",
    )
    return self_ensemble(model, views)


def converted_file(checkpoint: Path, cache_dir: Path) -> Path:
    """The ONNX file of ``checkpoint`` in the cache, converting it the first time."""
    digest = hashlib.sha256(f"v{EXPORT_VERSION}|".encode())
    with checkpoint.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    cached = cache_dir / CACHE_FOLDER / f"{checkpoint.stem}.{digest.hexdigest()[:16]}.onnx"
    if not cached.is_file():
        import_engine("onnx", ENGINE, CONVERT_FIX)
        log.info("Converting %s to ONNX once (cached in %s)", checkpoint, absolute(cached.parent))
        export_onnx(model_from_checkpoint(read_checkpoint(checkpoint), checkpoint), cached)
    return cached
