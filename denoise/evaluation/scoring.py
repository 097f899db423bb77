"""The work of ``python -m denoise.evaluate`` (its usage: :mod:`denoise.evaluate`): the model,
its peers and the classical filters on the same seeded noise, density by density; PSNR, SSIM
and MSE per image, the error breakdown, the tables, plots and example grid."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm.auto import tqdm

from denoise.data.datamodule import NoisyImageDataModule, to_model_input
from denoise.data.noise import (
    UNTOUCHED,
    apply_salt_and_pepper,
    density_seed,
    fixed_noise_codes,
)
from denoise.data.settings import check_data_settings
from denoise.files.outputs import absolute, folder_listing
from denoise.files.plots import image_rows, line_panels
from denoise.inference.checkpoints import (
    PRECISIONS,
    CheckpointError,
    load_denoiser,
    named_checkpoint,
    pick_device,
    resolve_checkpoint,
)
from denoise.inference.restorer import PictureRestorer
from denoise.inference.shipped import (
    AUTO,
    SHIPPED_MODELS,
    SHIPPED_NAMES,
    check_self_ensemble,
    model_views,
    pick_weights,
    shipped_model,
)
from denoise.inference.tiling import denoise_tiles, image_output, model_inputs, model_tiling
from denoise.models.denoiser import Restorer as TrainedModel
from denoise.models.filters import classical_filters
from denoise.models.metrics import PIXEL_CLASSES, ErrorBreakdown, image_metrics
from denoise.models.networks import network_name
from denoise.runtime.errors import SettingError
from denoise.runtime.settings import fractions, number_in, one_of, whole_number

log = logging.getLogger(__name__)

Denoiser = Callable[[torch.Tensor], torch.Tensor]
NOISY = "noisy input"
METRICS = ("psnr", "ssim", "mse")


@dataclass
class Evaluation:
    """Metrics per method and density, seconds spent per method, and example images."""

    densities: list[float]
    metrics: dict[str, dict[float, dict[str, float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    breakdown: dict[str, dict[float, dict[str, float | None]]] = field(default_factory=dict)
    examples: dict[float, dict[str, torch.Tensor]] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """Long format: one row per (method, density)."""
        rows = [
            {"method": method, "density": density, **values}
            for method, by_density in self.metrics.items()
            for density, values in by_density.items()
        ]
        return pd.DataFrame(rows, columns=["method", "density", *METRICS])

    def table(self, metric: str, digits: int) -> str:
        """Markdown table: methods as rows, densities as columns."""
        header = "| method | " + " | ".join(f"{d:.0%}" for d in self.densities) + " |"
        rule = "|---|" + "---:|" * len(self.densities)
        rows = [
            f"| {method} | "
            + " | ".join(f"{by_density[d][metric]:.{digits}f}" for d in self.densities)
            + " |"
            for method, by_density in self.metrics.items()
        ]
        return "\n".join([header, rule, *rows])

    def breakdown_frame(self) -> pd.DataFrame:
        """Long format: one row per (method, density) with every breakdown figure."""
        rows = [
            {"method": method, "density": density, **figures}
            for method, by_density in self.breakdown.items()
            for density, figures in by_density.items()
        ]
        return pd.DataFrame(rows)

    def breakdown_table(self, method: str) -> str:
        """Markdown table for one method: densities as rows, pixel kinds as columns."""
        by_density = self.breakdown[method]
        decides = any("missed" in figures for figures in by_density.values())
        columns = [f"{kind}: RMS / share" for kind in PIXEL_CLASSES]
        columns += ["missed noise", "false alarms"] if decides else []
        lines = ["| density | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for density, figures in by_density.items():
            cells = [
                f"{_shown(figures[f'rms {kind}'], '.2f')} / {figures[f'share {kind}']:.0%}"
                for kind in PIXEL_CLASSES
            ]
            if decides:
                cells += [_shown(figures["missed"], ".2%"), _shown(figures["false alarms"], ".2%")]
            lines.append(f"| {density:.0%} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def evaluate_denoisers(
    clean_images: torch.Tensor,
    denoisers: Mapping[str, Denoiser],
    densities: Sequence[float],
    seed: int,
    salt_vs_pepper: float = 0.5,
    batch_size: int = 256,
    example_densities: Sequence[float] = (),
    example_count: int = 6,
    pixel_share: float = 0.0,
) -> Evaluation:
    """Score ``denoisers`` (and the noisy input itself) on ``clean_images`` (float, N×C×H×W).

    The noise for a density depends only on ``seed``, the density and ``pixel_share`` (the
    share of images whose noise hits all channels of a pixel at once), never on the batch
    size or on which other densities are scored.
    """
    result = Evaluation(densities=list(densities))
    methods = [NOISY, *denoisers]
    result.seconds = dict.fromkeys(methods, 0.0)
    result.breakdown = {method: {} for method in denoisers}
    total = len(densities) * -(-len(clean_images) // batch_size)
    progress = tqdm(total=total, desc="evaluating", unit="batch")
    for density in densities:
        codes = fixed_noise_codes(
            len(clean_images),
            clean_images.shape[1:],
            density,
            salt_vs_pepper,
            density_seed(seed, density),
            pixel_share,
        )
        trackers = {method: image_metrics() for method in methods}
        breakdowns = {method: ErrorBreakdown() for method in denoisers}
        for start in range(0, len(clean_images), batch_size):
            clean = clean_images[start : start + batch_size]
            hit = codes[start : start + batch_size] != UNTOUCHED
            noisy = apply_salt_and_pepper(clean, codes[start : start + batch_size])
            outputs = {NOISY: noisy}
            for method, denoiser in denoisers.items():
                began = time.perf_counter()
                restored, judged_noise = restore_and_decide(denoiser, noisy)
                outputs[method] = restored.to(clean.device, torch.float32).clamp(0, 1)
                result.seconds[method] += time.perf_counter() - began
                breakdowns[method].update(outputs[method], clean, noisy, hit, judged_noise)
            for method, restored in outputs.items():
                trackers[method].update(restored, clean)
            if density in example_densities and start == 0:
                result.examples[density] = {
                    "clean": clean[:example_count],
                    **{method: images[:example_count] for method, images in outputs.items()},
                }
            progress.update()
        for method, tracker in trackers.items():
            values = {name: float(value) for name, value in tracker.compute().items()}
            result.metrics.setdefault(method, {})[density] = values
        for method, breakdown in breakdowns.items():
            result.breakdown[method][density] = breakdown.compute()
    progress.close()
    return result


def _shown(value: float | None, spec: str) -> str:
    """A figure, or a dash where there was nothing to measure."""
    return "–" if value is None else format(value, spec)


def restore_and_decide(
    denoiser: Denoiser, noisy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A denoiser's output, and its noise decision where it exposes one (``ModelDenoiser``)."""
    decide = getattr(denoiser, "restore_and_decide", None)
    if decide is None:
        return denoiser(noisy), None
    return decide(noisy)


def model_label(model: TrainedModel, channels: int | None = None) -> str:
    """The model's name in tables and plots: which architecture it is, and how it meets
    images of ``channels`` where that is not its own count (:func:`channel_rule`)."""
    architecture = network_name(model.hparams.net)
    label = {"unet": "U-Net", "corruption_aware": "corruption-aware U-Net"}.get(
        architecture, architecture
    )
    own = model.hparams.net["in_channels"]
    rule = channel_rule(own, channels or own)
    return label if rule in ("grey", "colour") else f"{label} ({rule})"


def channel_rule(in_channels: int, channels: int) -> str:
    """How a model of ``in_channels`` restores images of ``channels``, in words for the
    report (the rule is :func:`denoise.inference.tiling.model_inputs`)."""
    if in_channels == channels:
        return "grey" if channels == 1 else "colour"
    return "per channel" if in_channels == 1 else "grey as RGB, outputs averaged"


class ModelDenoiser:
    """Batched inference on the model's device, results back on the input's device; it also
    hands over the model's noise decision, for the error breakdown. A model of another
    channel count than the images meets them as in ``predict`` (:func:`model_inputs`), and
    ``batch_size`` counts what the model takes at once (a grey model: single channels).
    With ``tiling``, each image is restored in tiles as ``predict`` restores it; the noise
    decisions of tiles are not gathered, so the error breakdown is left out."""

    def __init__(
        self, model: TrainedModel, batch_size: int, tiling: Mapping[str, int] | None = None
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.tiling = tiling

    def __call__(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.restore_and_decide(noisy)[0]

    @torch.inference_mode()
    def restore_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The restored images, and where the model judged noise: for a colour model on a
        grey image, where most of its three channels did."""
        channels = noisy.shape[1]
        restored, decisions = [], []
        for part in model_inputs(noisy, self.model.hparams.net["in_channels"]).split(
            self.batch_size
        ):
            if self.tiling is not None:
                restored.append(denoise_tiles(self.model, part, **self.tiling).to(noisy.device))
                continue
            images, judged_noise = self.model.denoise_and_decide(part.to(self.model.device))
            restored.append(images.to(noisy.device))
            if judged_noise is not None:
                decisions.append(judged_noise.to(noisy.device, torch.float32))
        images = image_output(torch.cat(restored), channels)
        if not decisions:
            return images, None
        return images, image_output(torch.cat(decisions), channels) > 0.5


def write_outputs(result: Evaluation, output_dir: Path, context: dict) -> None:
    """metrics.csv/json/md, the metric-vs-density plot and the example grid."""
    output_dir.mkdir(parents=True, exist_ok=True)
    result.frame().to_csv(output_dir / "metrics.csv", index=False)
    payload = {
        **context,
        "seconds": result.seconds,
        "metrics": result.metrics,
        "diagnostic": result.breakdown,
    }
    (output_dir / "metrics.json").write_text(json.dumps(payload, indent=2))
    (output_dir / "metrics.md").write_text(markdown_report(result, context))
    panels = [
        (
            label,
            {
                m: (result.densities, [by[d][key] for d in result.densities])
                for m, by in result.metrics.items()
            },
        )
        for key, label in (("psnr", "PSNR (dB)"), ("ssim", "SSIM"))
    ]
    line_panels(
        panels, "salt-and-pepper density", output_dir / "metrics_vs_density.png", context["title"]
    )
    write_diagnostic(result, output_dir, context)
    if result.examples:
        rows = [
            (f"{density:.0%}", list(images.values()), list(images))
            for density, images in result.examples.items()
        ]
        image_rows(rows, output_dir / "examples.png")


def write_diagnostic(result: Evaluation, output_dir: Path, context: dict) -> None:
    """diagnostic.md (one table per method), diagnostic.csv and diagnostic.png (the model's
    error by kind of pixel against density)."""
    result.breakdown_frame().to_csv(output_dir / "diagnostic.csv", index=False)
    sections = [f"## {method}\n\n{result.breakdown_table(method)}\n" for method in result.breakdown]
    (output_dir / "diagnostic.md").write_text(
        f"{context['title']}\n\n{DIAGNOSTIC_LEGEND}\n\n" + "\n".join(sections)
    )
    model = context.get("model")
    if model not in result.breakdown:
        return
    by_density = result.breakdown[model]
    panels = [
        (
            label,
            {
                kind: (
                    result.densities,
                    [_plotted(by_density[d][f"{key} {kind}"]) for d in result.densities],
                )
                for kind in PIXEL_CLASSES
            },
        )
        for key, label in (("rms", "RMS error (grey levels)"), ("share", "share of squared error"))
    ]
    line_panels(
        panels, "salt-and-pepper density", output_dir / "diagnostic.png", f"Where the {model} errs"
    )


def _plotted(value: float | None) -> float:
    return float("nan") if value is None else value  # matplotlib leaves a gap


DIAGNOSTIC_LEGEND = (
    "RMS error in grey levels (of 255) and share of the squared error on each kind of pixel: "
    "noise = pixels the noise hit; black/white = genuinely black or white pixels it spared; "
    "other = all the rest. Missed noise: share of the noise pixels that changed the image "
    "which the model left alone; false alarms: share of the genuine black/white pixels it "
    "replaced."
)


def pixel_share_note(pixel_share: float) -> str:
    """How the title says the noise hit whole pixels (nothing when each channel is hit on its
    own, the convention of published colour results)."""
    if pixel_share == 0:
        return ""
    return f"; in {pixel_share:.0%} of the images the noise hits all channels of a pixel at once"


def views_note(views: int) -> str:
    """How the title says the models were self-ensembled (nothing for a single pass)."""
    if views == 1:
        return ""
    return f"; models averaged over {views} orientations (self_ensemble={views})"


def markdown_report(result: Evaluation, context: dict) -> str:
    return (
        f"{context['title']}\n\nPSNR (dB), averaged per image\n\n{result.table('psnr', 2)}\n\n"
        f"SSIM\n\n{result.table('ssim', 4)}\n"
    )


# The densities whose examples are drawn when example_densities is null, where they are scored.
DEFAULT_EXAMPLE_DENSITIES = (0.1, 0.5)


def example_densities(cfg: DictConfig) -> list[float]:
    """The densities whose restored examples are drawn: as set (each one of ``densities``);
    where null, 0.1 and 0.5 if scored, else the first noisy density scored, so that
    ``densities=[0.3]`` alone still shows examples."""
    densities = fractions(cfg, "densities")
    if cfg.get("example_densities") is None:
        chosen = [d for d in DEFAULT_EXAMPLE_DENSITIES if d in densities]
        return chosen or [d for d in densities if d > 0][:1]
    examples = fractions(cfg, "example_densities", allow_empty=True)
    if not set(examples) <= set(densities):
        raise SettingError(
            f"example_densities={_listed(examples)}: "
            f"each must be one of densities={_listed(densities)}"
        )
    return examples


def check_evaluation_settings(cfg: DictConfig) -> None:
    """Every value that would fail mid-evaluation, checked before the model or data load."""
    check_data_settings(cfg)
    one_of(cfg, "split", tuple(cfg.data.get("splits") or ("train", "val", "test")))
    one_of(cfg, "precision", PRECISIONS)
    pick_device(cfg.device)
    check_self_ensemble(cfg)
    one_of(cfg, "weights", (AUTO, *SHIPPED_NAMES))
    example_densities(cfg)
    whole_number(cfg, "example_count", minimum=0)
    whole_number(cfg, "batch_size")
    whole_number(cfg, "limit", optional=True)
    if not isinstance(cfg.get("tiles"), bool):
        raise SettingError(f"tiles={cfg.get('tiles')}: must be true or false")
    whole_number(cfg, "seed", minimum=0)
    number_in(cfg, "salt_vs_pepper", 0.0, 1.0)
    number_in(cfg, "pixel_share", 0.0, 1.0)
    peers = cfg.get("peers") or {}
    if not isinstance(peers, Mapping) or not all(isinstance(path, str) for path in peers.values()):
        raise SettingError(
            "peers: must map a name to a checkpoint or a shipped model, e.g. "
            "+peers.attention_unet_10=…/best.ckpt or +peers.grey=natural"
        )
    window = whole_number(cfg, "amf_max_window", minimum=3)
    if window % 2 == 0:
        raise SettingError(f"amf_max_window={window}: must be an odd whole number of at least 3")


def peers_paths(cfg: DictConfig) -> dict[str, Path]:
    """The checkpoint files of the peer models scored beside the main one, by name: a file,
    or a shipped model's name for its grey model (``+peers.grey=natural``; a shipped name
    wins over a file of that name, :func:`named_checkpoint`)."""
    peers = cfg.get("peers") or {}
    return {name: named_checkpoint(value, f"peers.{name}") for name, value in peers.items()}


def model_checkpoint(cfg: DictConfig, channels: int) -> tuple[Path, str | None]:
    """The main model's checkpoint, and the shipped model's name when it is one: an explicit
    ``ckpt_path`` wins; without one, the shipped model (``auto``: the one that suits the
    data) for ``channels`` as ``predict`` picks it, its colour model for colour images."""
    if cfg.ckpt_path:
        return resolve_checkpoint(cfg.ckpt_path), None
    weights = pick_weights(cfg.weights, cfg.data)
    restorer = PictureRestorer(weights=weights)
    try:
        return restorer.model_path(grey=channels == 1), weights
    except CheckpointError:  # a colour model can be registered before its file ships
        raise CheckpointError(
            f"{restorer.shipped.colour}: the shipped {weights} colour weights are missing "
            "from this install",
            fix=f"pass ckpt_path=… (a colour checkpoint); ckpt_path={restorer.path} "
            f"self_ensemble={model_views(None, weights)} scores the grey model on each channel",
        ) from None


def _listed(values: Sequence[float]) -> str:
    return "[" + ",".join(f"{value:g}" for value in values) + "]"


def evaluate(cfg: DictConfig) -> Evaluation:
    """Load the checkpoint and the split, score every method, write the outputs."""
    output_dir = Path(cfg.paths.output_dir)
    log.info("This evaluation writes into %s", absolute(output_dir))
    check_evaluation_settings(cfg)
    channels = int(cfg.data.channels)
    checkpoint, weights = model_checkpoint(cfg, channels)
    shipped = f"the shipped {weights} model ({checkpoint.name})"
    log.info("Scoring %s", shipped if weights else absolute(checkpoint))
    # peers are averaged over the same views as the model, so that the figures compare
    views = model_views(cfg.self_ensemble, weights)
    model = load_denoiser(checkpoint, cfg.device, cfg.precision, views=views)
    peer_paths = peers_paths(cfg)
    peers = {
        name: load_denoiser(path, cfg.device, cfg.precision, views=views)
        for name, path in peer_paths.items()
    }
    datamodule: NoisyImageDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    images = datamodule.datasets[cfg.split].images
    if cfg.get("limit"):
        images = images[: cfg.limit]
    clean = to_model_input(images, datamodule.image_size, datamodule.channels)

    def tiling(denoiser: TrainedModel, shipped: str | None) -> dict[str, int] | None:
        """``tiles=true``: the model's own tiles, as predict cuts them."""
        if not cfg.tiles:
            return None
        return model_tiling(denoiser, own=shipped_model(shipped).tiling if shipped else None)

    peer_names = {name: str(cfg.peers[name]) for name in peers}
    denoisers = {
        **classical_filters(cfg.amf_max_window),
        **{
            name: ModelDenoiser(
                peer,
                cfg.batch_size,
                tiling(peer, peer_names[name] if peer_names[name] in SHIPPED_MODELS else None),
            )
            for name, peer in peers.items()
        },
        model_label(model, channels): ModelDenoiser(model, cfg.batch_size, tiling(model, weights)),
    }
    result = evaluate_denoisers(
        clean,
        denoisers,
        list(cfg.densities),
        cfg.seed,
        cfg.salt_vs_pepper,
        cfg.batch_size,
        example_densities(cfg),
        cfg.example_count,
        cfg.pixel_share,
    )
    context = {
        "title": f"{cfg.split} split ({datamodule.describe_split(cfg.split, len(clean))}), "
        f"{'colour, ' if channels == 3 else ''}noise seed {cfg.seed}"
        f"{pixel_share_note(cfg.pixel_share)}{views_note(views)}",
        "checkpoint": str(checkpoint),
        "data": datamodule.source,
        "split": cfg.split,
        "images": len(clean),
        "seed": cfg.seed,
        "pixel_share": cfg.pixel_share,
        "channels": channels,
        "amf_max_window": cfg.amf_max_window,
        "precision": "bf16" if model.autocast is not None else "fp32",
        "self_ensemble": views,
        "model": model_label(model, channels),
        "peers": {name: str(path) for name, path in peer_paths.items()},
        "channel_rules": {
            name: channel_rule(scored.hparams.net["in_channels"], channels)
            for name, scored in {**peers, model_label(model, channels): model}.items()
        },
    }
    write_outputs(result, output_dir, context)
    print("\n" + markdown_report(result, context))
    print(f"Where the {context['model']} errs (diagnostic.md has every method):\n")
    print(DIAGNOSTIC_LEGEND + "\n")
    print(result.breakdown_table(context["model"]) + "\n")
    seconds = ", ".join(f"{method} {value:.1f}" for method, value in result.seconds.items())
    print(f"Seconds per method: {seconds}\n")
    print(folder_listing(output_dir, "Outputs of this evaluation in"))
    return result
