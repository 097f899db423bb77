"""Image-quality metrics averaged per image, as papers report them."""

from __future__ import annotations

from torchmetrics import MeanSquaredError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure


def image_metrics(prefix: str = "") -> MetricCollection:
    """PSNR, SSIM and MSE for images in [0, 1].

    PSNR is computed per image (``dim=(1, 2, 3)``) and then averaged; the default
    ``dim=None`` would pool the squared error over the whole epoch instead.
    """
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
            "mse": MeanSquaredError(),
        },
        prefix=prefix,
    )
