"""A corruption-aware denoiser: it only rewrites pixels that salt-and-pepper could have hit.

Salt-and-pepper sets a pixel to exactly 0 or 1, so every other pixel is known to be clean.
The reference U-Net re-synthesises all pixels and so blurs the ones that were never
touched. This design keeps them bit for bit, and spends the network on the *candidates*
(pixels at 0 or 1). A candidate may still be a genuinely black or white pixel (about 7%
of FER2013's clean pixels are), which is why the network sees the neighbourhood and
learns to keep it rather than being told "black or white means noise".

The network is given three planes per image channel:

- the noisy image;
- the candidate mask;
- a first guess for candidates: normalized convolution of the non-candidate pixels at
  several Gaussian scales, each scale falling back on the coarser one where it has no
  support (so it holds at 2% and at 95% noise alike);
- with ``global_context``, two constant planes: the image's share of black and of white
  pixels. They say at once how noisy the whole image is (no salt at all means no noise,
  however black the picture), which a 48x48 U-Net otherwise pieces together from local
  evidence.

With ``cross_channel`` (colour pictures), the network restores one channel at a time, the
same weights for each, and sees beside its own planes the other channels' noisy, candidate and
guess planes: where noise hits each channel on its own, a pixel's red may be noise where its
green is not, and the green says what the red was. Warm-started from a grey model, the planes
of the other channels come in with zero weights, so it starts out restoring each channel as
the grey model does, and training teaches it what one channel says about another.

With ``colour_sigma`` (colour pictures), a value the network judged noise in one channel is
estimated again from the channels that are clean at that pixel (not black or white, so
certainly clean): their value, plus the local difference between the restored channels (a
Gaussian of that sigma). Neighbouring colours vary together far more than they vary alone, so
a clean green says more about a red than the red's own neighbours do.

With ``luminance_sigma`` (colour pictures), the values judged noise are inpainted once more,
from a single grey plane holding every clean sample of any channel (its value less the local
chroma: each channel's restored difference from the channels' mean, a Gaussian of that sigma,
wider under heavy noise), then given back their chroma. Where noise hits each channel on its
own, a pixel has some clean channel far more often than a given channel is clean there, so
that plane has several times the clean samples of any one channel, and the same network
inpaints it from denser evidence.

With ``refine_channels``, a second, smaller U-Net (a refinement stage, as in multi-stage
restoration networks) sees the first result beside the noisy image, the mask and the guess,
and adds a correction on candidates. Its output conv starts at zero, so it can be added to
a trained model (``init_from``) without changing what it computes.

For each candidate the network predicts a corrected value (the guess plus a correction)
and a *keep* probability: the output is ``keep * input + (1 - keep) * corrected`` on
candidates and the input, exactly, elsewhere. The gate matters at low noise, where most
candidates are genuine: on FER2013 after one epoch it lifts 2% noise from 28.0 dB to
37.9 dB (predicting the value alone means learning to output the input exactly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from denoise.data.noise import candidate_mask
from denoise.models.unet import DenoisingUNet

DEFAULT_SIGMAS = (1.0, 2.0, 4.0, 8.0)
# The luminance stage's chroma blurs wider as noise gets heavier: ``luminance_sigma`` up to half
# of an image's values being candidates, growing linearly to this many times it at 90%, where
# the restored colours it is taken from are themselves mostly inpainted (README, Colour photos).
HEAVY_NOISE_CHROMA = (0.5, 0.9, 3.0)
REFINER_DEPTH = 3  # the refinement U-Net works at full, half and quarter resolution


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian reaching out to 3 sigma."""
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def separable_blur(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of every plane, with zeros outside the image (what normalized
    convolution needs: the weights are blurred the same way, so borders stay unbiased)."""
    batch, channels, height, width = images.shape
    radius = kernel.numel() // 2
    kernel = kernel.to(images.dtype)
    if torch.onnx.is_in_onnx_export():  # ONNX needs a fixed group count: a batch of planes
        planes = images.reshape(batch * channels, 1, height, width)
        planes = F.conv2d(planes, kernel.view(1, 1, 1, -1), padding=(0, radius))
        planes = F.conv2d(planes, kernel.view(1, 1, -1, 1), padding=(radius, 0))
        return planes.reshape(batch, channels, height, width)
    # Every plane a group of one depthwise convolution: oneDNN runs that several times faster
    # than a batch of single-plane convolutions, with the same sums.
    count = batch * channels
    planes = images.reshape(1, count, height, width)
    across = kernel.view(1, 1, 1, -1).expand(count, 1, 1, -1)
    down = kernel.view(1, 1, -1, 1).expand(count, 1, -1, 1)
    planes = F.conv2d(planes, across, padding=(0, radius), groups=count)
    planes = F.conv2d(planes, down, padding=(radius, 0), groups=count)
    return planes.reshape(batch, channels, height, width)


def local_mean(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted mean of each pixel's neighbourhood within the image: unbiased at the
    borders, where :func:`separable_blur` fades towards zero."""
    ones = torch.ones_like(images[:1, :1])
    return separable_blur(images, kernel) / separable_blur(ones, kernel)


def normalized_convolution_fill(
    images: torch.Tensor,
    valid: torch.Tensor,
    kernels: Sequence[torch.Tensor],
    fallback_weight: float = 0.05,
) -> torch.Tensor:
    """Estimate every pixel from the ``valid`` ones, finest scale first where it has support.

    ``kernels`` go from fine to coarse. The coarsest scale is a plain weighted average (grey
    0.5 where a plane has no valid pixel at all); each finer scale blends in as
    ``(blur(x * valid) + w * coarse) / (blur(valid) + w)``, so it takes over where the
    local weight of valid pixels is well above ``fallback_weight``.
    """
    estimate: torch.Tensor | None = None
    for kernel in reversed(kernels):
        weighted = separable_blur(images * valid, kernel)
        weight = separable_blur(valid, kernel)
        if estimate is None:
            estimate = torch.where(
                weight > 1e-6, weighted / weight.clamp_min(1e-6), torch.full_like(weight, 0.5)
            )
        else:
            estimate = (weighted + fallback_weight * estimate) / (weight + fallback_weight)
    assert estimate is not None, "at least one kernel is needed"
    return estimate


def extreme_shares(images: torch.Tensor, level: float) -> torch.Tensor:
    """A constant plane per image and channel: the share of its pixels exactly at ``level``."""
    share = (images == level).to(images.dtype).mean(dim=(2, 3), keepdim=True)
    return share.expand_as(images)


def luminance_samples(
    noisy: torch.Tensor, clean: torch.Tensor, chroma: torch.Tensor
) -> torch.Tensor:
    """One grey plane: where some channel of a pixel is ``clean``, the mean over those channels
    of their value less their ``chroma`` (kept off black and white, which would read as noise);
    elsewhere the channels' majority of black or white, still a candidate (a black pixel stays
    black there)."""
    count = clean.sum(1, keepdim=True)
    samples = ((noisy - chroma) * clean).sum(1, keepdim=True) / count.clamp_min(1.0)
    majority = (noisy.sum(1, keepdim=True) > noisy.shape[1] / 2).to(noisy.dtype)
    return torch.where(count > 0, samples.clamp(1.0 / 255, 254.0 / 255), majority)


def colour_difference(
    restored: torch.Tensor,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    judged_noise: torch.Tensor,
    kernel: torch.Tensor,
) -> torch.Tensor:
    """``restored`` where each value judged noise is, where some other channel of the pixel is
    ``clean``, the mean over those channels of their noisy (clean) value plus the local mean
    difference between the restored channel and theirs."""
    channels = restored.shape[1]
    total = torch.zeros_like(restored)
    count = torch.zeros_like(restored)
    for channel in range(channels):
        for other in range(channels):
            if other == channel:
                continue
            difference = restored[:, channel : channel + 1] - restored[:, other : other + 1]
            local = local_mean(difference, kernel)
            usable = clean[:, other : other + 1]
            total[:, channel : channel + 1] += usable * (noisy[:, other : other + 1] + local)
            count[:, channel : channel + 1] += usable
    estimate = (total / count.clamp_min(1.0)).clamp(0.0, 1.0)
    return torch.where(judged_noise & (count > 0), estimate, restored)


class CorruptionAwareUNet(nn.Module):
    """A :class:`DenoisingUNet` that decides, for each candidate pixel, whether to keep it or
    to replace it by a corrected normalized-convolution guess; every other pixel leaves
    exactly as it came in."""

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 16,
        depth: int = 5,
        dropout: float = 0.0,
        negative_slope: float = 0.1,
        packed_dropout: bool = True,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        global_context: bool = False,
        attention_levels: int = 0,
        refine_channels: int = 0,
        cross_channel: bool = False,
        colour_sigma: float = 0.0,
        luminance_sigma: float = 0.0,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        if out_channels is not None and out_channels != in_channels:
            raise ValueError(
                "the corruption-aware model restores the channels it is given: "
                f"in_channels ({in_channels}) must equal out_channels ({out_channels})"
            )
        channels = in_channels
        if cross_channel and refine_channels:
            raise ValueError("cross_channel has no refinement stage: set refine_channels=0")
        for stage, sigma in (("colour_sigma", colour_sigma), ("luminance_sigma", luminance_sigma)):
            if sigma and not cross_channel:
                raise ValueError(f"{stage} is a stage of the cross_channel design")
        self.global_context = global_context
        self.cross_channel = cross_channel
        self.channels = channels
        own = 5 if global_context else 3
        # cross_channel: one channel at a time, its own planes, then the others' 3 each
        in_planes = own + 3 * (channels - 1) if cross_channel else own * channels
        self.backbone = DenoisingUNet(
            in_planes,
            2 if cross_channel else 2 * channels,
            base_channels,
            depth,
            dropout,
            negative_slope,
            packed_dropout,
            attention_levels,
        )
        self.refiner: DenoisingUNet | None = None
        if refine_channels:
            self.refiner = DenoisingUNet(
                4 * channels, channels, refine_channels, REFINER_DEPTH, dropout, negative_slope
            )
            nn.init.zeros_(self.refiner.output.weight)  # starts as "no correction"
            nn.init.zeros_(self.refiner.output.bias)
        for index, sigma in enumerate(sigmas):
            self.register_buffer(f"kernel{index}", gaussian_kernel(sigma), persistent=False)
        self.scales = len(sigmas)
        self.colour_sigma = colour_sigma
        if colour_sigma:
            self.register_buffer("colour_kernel", gaussian_kernel(colour_sigma), persistent=False)
        self.luminance_sigma = luminance_sigma
        if luminance_sigma:
            chroma = gaussian_kernel(luminance_sigma)
            heavy = gaussian_kernel(luminance_sigma * HEAVY_NOISE_CHROMA[2])
            self.register_buffer("chroma_kernel", chroma, persistent=False)
            self.register_buffer("heavy_chroma_kernel", heavy, persistent=False)
        self.size_multiple = self.backbone.size_multiple  # tiling aligns tiles to it

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.restore_and_decide(noisy)[0]

    def restore_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The restored images, and the model's decision: True where it judged a pixel noise
        (a candidate whose keep probability is below one half)."""
        noisy = noisy.float()
        restored, judged_noise, candidates, guess = self._gated(noisy)
        colour = noisy.shape[1] > 1
        with torch.autocast(noisy.device.type, enabled=False):
            if self.colour_sigma and colour:
                restored = colour_difference(
                    restored, noisy, 1.0 - candidates, judged_noise, self.colour_kernel
                )
        if self.luminance_sigma and colour:
            restored = self._luminance_pass(restored, noisy, 1.0 - candidates, judged_noise)
        if self.refiner is not None:
            stages = torch.cat([restored, noisy, candidates, guess], dim=1)
            stages = stages.contiguous(memory_format=self._backbone_memory_format())
            restored = restored + candidates * self.refiner(stages).float()
        return restored, judged_noise

    def _gated(
        self, noisy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The backbone's pass: the restored images, where it judged noise, the candidates and
        the normalized-convolution guess."""
        candidates = candidate_mask(noisy)
        kept = 1.0 - candidates
        kernels = [getattr(self, f"kernel{index}") for index in range(self.scales)]
        # The guess and the blend stay float32 under a bf16 autocast: they are cheap
        # (1-channel blurs, element-wise), and bf16's 8-bit mantissa would blur clean detail.
        with torch.autocast(noisy.device.type, enabled=False):
            guess = normalized_convolution_fill(noisy, kept, kernels)
        planes = [noisy, candidates, guess]
        if self.global_context:
            planes += [extreme_shares(noisy, 0.0), extreme_shares(noisy, 1.0)]
        if self.cross_channel:
            correction, keep_logit = self._per_channel(planes)
        else:
            planes = torch.cat(planes, dim=1)
            planes = planes.contiguous(memory_format=self._backbone_memory_format())
            correction, keep_logit = self.backbone(planes).float().chunk(2, dim=1)
        keep = torch.sigmoid(keep_logit)
        replaced = keep * noisy + (1.0 - keep) * (guess + correction)
        judged_noise = (candidates > 0) & (keep < 0.5)
        return kept * noisy + candidates * replaced, judged_noise, candidates, guess

    def _luminance_pass(
        self,
        restored: torch.Tensor,
        noisy: torch.Tensor,
        clean: torch.Tensor,
        judged_noise: torch.Tensor,
    ) -> torch.Tensor:
        """``restored`` where each value judged noise is inpainted again from the plane of
        :func:`luminance_samples`, then given back its chroma."""
        with torch.autocast(noisy.device.type, enabled=False):
            difference = restored - restored.mean(1, keepdim=True)
            start, end, _ = HEAVY_NOISE_CHROMA
            share = 1.0 - clean.mean(dim=(1, 2, 3), keepdim=True)  # of values: candidates
            heavy = ((share - start) / (end - start)).clamp(0.0, 1.0)
            chroma = (1.0 - heavy) * local_mean(difference, self.chroma_kernel)
            chroma = chroma + heavy * local_mean(difference, self.heavy_chroma_kernel)
            luminance = luminance_samples(noisy, clean, chroma)
        inpainted = self._gated(luminance)[0]
        return torch.where(judged_noise, (inpainted + chroma).clamp(0.0, 1.0), restored)

    def _per_channel(self, planes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone on each channel as its own image (the batch holds N x C of them):
        its own planes, then the noisy, candidate and guess planes of the other channels. A
        one-channel image is a grey picture: its other channels are its own."""
        batch, channels, height, width = planes[0].shape
        own = torch.stack(planes, dim=2)  # (N, C, kinds, H, W)
        shared = own[:, :, :3]  # noisy, candidates, guess
        if channels == 1:
            others = [[0] * (self.channels - 1)]
        else:
            others = [[o for o in range(channels) if o != c] for c in range(channels)]
        inputs = [
            torch.cat([own[:, c], shared[:, others[c]].flatten(1, 2)], dim=1)
            for c in range(channels)
        ]
        stacked = torch.stack(inputs, dim=1).flatten(0, 1)  # (N * C, planes, H, W)
        stacked = stacked.contiguous(memory_format=self._backbone_memory_format())
        output = self.backbone(stacked).float().view(batch, channels, 2, height, width)
        return output[:, :, 0], output[:, :, 1]

    def _backbone_memory_format(self) -> torch.memory_format:
        """The layout of the backbone's first conv weights (channels_last when the module
        chose it): the input planes follow it, so oneDNN converts nothing."""
        weight = self.backbone.encoder[0][0].weight
        if weight.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
        return torch.contiguous_format
