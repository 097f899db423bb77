"""What a U-Net of given settings takes in memory, from the settings alone (no torch).

The networks here (``DenoisingUNet``, the corruption-aware backbone) double their channels at
every level, ``base_channels * 2**level`` for ``depth`` levels, and halve the resolution at
every level below the first, after padding the input to a multiple of ``2**(depth - 1)``. So
the weights grow as ``(base_channels * 2**depth)**2`` and the activations as ``base_channels``
times the pixels: an estimate from the settings costs nothing, where building the network (on
the ``meta`` device) would overflow on the very settings it has to refuse
(``model.net.depth=100``: 2**99 channels). Python integers keep every size exact, however large.

The estimates are lower bounds, close to the truth for the plain U-Net (parameters within 1%;
activations calibrated on a CPU training step, see ``ACTIVATION_COPIES``): they refuse what
cannot fit, never what could.
"""

from __future__ import annotations

FLOAT_BYTES = 4
# Weights, their gradients and Adam's two moments: four floats per parameter in training.
TRAINING_COPIES_PER_PARAMETER = 4
# Tensors kept per channel and pixel of every level for the backward pass (convolutions,
# activations, dropout and batch norm outputs, the decoder's upsampling and concatenation),
# as measured against the peak memory of a CPU training step with Adam: 23-30 copies in fp32,
# 17-20 with bf16-mixed (unet base 32 depth 5 and base 8 depth 3, corruption_aware base 12;
# 48 and 96 px). Counted low, so as not to refuse a run that would fit.
ACTIVATION_COPIES = 16
# Without gradients (prediction, validation) a level frees its tensors as the next begins:
# a few copies of the full-resolution level stay alive at once (7 measured: unet base 32 on
# 512 px tiles, corruption_aware base 16 on 1024 px), counted low as well.
INFERENCE_COPIES = 5


def max_depth(side: int) -> int:
    """The deepest U-Net whose bottom level still has at least one pixel of an image of
    ``side`` pixels (deeper ones only pad the image to reach it)."""
    return max(side, 1).bit_length()  # 1 + floor(log2(side)), exactly


def parameter_count(base_channels: int, depth: int, in_channels: int, out_channels: int) -> int:
    """The weights of the U-Net's 3x3 convolutions, exactly for ``DenoisingUNet`` without
    attention, less its biases and batch norms (under 1%)."""
    widths = [base_channels * 2**level for level in range(depth)]
    encoder = sum(
        9 * ((in_channels if level == 0 else widths[level - 1]) + width) * width
        for level, width in enumerate(widths)
    )
    # Each decoder level: a transposed conv from the level below, a conv of the skip and the
    # upsampled features (twice the width), another conv.
    decoder = sum(
        9 * (widths[level] + 3 * widths[level - 1]) * widths[level - 1] for level in range(1, depth)
    )
    return encoder + decoder + 9 * base_channels * out_channels


def activation_values(base_channels: int, depth: int, height: int, width: int) -> int:
    """Channels times pixels over the levels of one image: ``sum(c_l * H_l * W_l)``, the
    image padded to a multiple of ``2**(depth - 1)`` as the network pads it."""
    multiple = 2 ** (depth - 1)
    padded_h, padded_w = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    return sum(
        base_channels * 2**level * (padded_h >> level) * (padded_w >> level)
        for level in range(depth)
    )


def training_bytes(
    base_channels: int,
    depth: int,
    in_channels: int,
    out_channels: int,
    height: int,
    width: int,
    batch: int,
) -> tuple[int, int]:
    """Bytes a training step takes: (the weights with their gradients and Adam's state, one
    batch's activations)."""
    weights = TRAINING_COPIES_PER_PARAMETER * FLOAT_BYTES
    parameters = parameter_count(base_channels, depth, in_channels, out_channels) * weights
    values = activation_values(base_channels, depth, height, width)
    return parameters, ACTIVATION_COPIES * FLOAT_BYTES * values * batch


def inference_bytes(base_channels: int, depth: int, height: int, width: int, batch: int) -> int:
    """Bytes the activations of a batch of ``height x width`` tiles take without gradients:
    a few copies of the largest level (the first, at full resolution)."""
    multiple = 2 ** (depth - 1)
    padded = -(-height // multiple) * multiple * (-(-width // multiple) * multiple)
    return INFERENCE_COPIES * FLOAT_BYTES * base_channels * padded * batch
