"""Image-quality metrics averaged per image, as papers report them."""

from __future__ import annotations

import torch
from torchmetrics import MeanSquaredError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

MAX_PSNR_DB = 100.0


class PerImagePSNR(PeakSignalNoiseRatio):
    """PSNR per image (data range 1), averaged over images, with an exact restoration
    counted as ``max_db`` rather than infinity.

    The default ``dim=None`` would pool the squared error over the whole epoch. Without
    the cap, one restored-exactly image (FER2013's PublicTest holds an all-black face)
    would make the average infinite.
    """

    def __init__(self, max_db: float = MAX_PSNR_DB, **kwargs) -> None:
        super().__init__(data_range=1.0, dim=(1, 2, 3), **kwargs)
        self.min_mse = 10.0 ** (-max_db / 10.0)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds, target)
        floor = self.min_mse * self.total[-1]
        self.sum_squared_error[-1] = torch.maximum(self.sum_squared_error[-1], floor)


def image_metrics(prefix: str = "") -> MetricCollection:
    """PSNR, SSIM and MSE for images in [0, 1], each averaged over images."""
    return MetricCollection(
        {
            "psnr": PerImagePSNR(),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
            "mse": MeanSquaredError(),
        },
        prefix=prefix,
    )
