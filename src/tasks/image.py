"""Image classification: uint8 images in, normalised on the device, logits out."""
from __future__ import annotations

import torch

from src.tasks.classification import ClassificationTask


class ImageClassification(ClassificationTask):
    """data_info: class_names, in_channels, image_size (H, W), mean and std per channel (0-1 scale)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.data_info["in_channels"]
        mean = torch.tensor(self.data_info["mean"], dtype=torch.float32).view(1, c, 1, 1)
        std = torch.tensor(self.data_info["std"], dtype=torch.float32).view(1, c, 1, 1)
        # x/255 then (x - mean)/std, as one multiply-add
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    def model_kwargs(self):
        return {**super().model_kwargs(), "in_channels": self.data_info["in_channels"]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = torch.addcmul(self.shift, x.float(), self.scale)
        return self.net(x)
