"""A compact CNN for small images."""
from __future__ import annotations

from torch import Tensor, nn


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CNN(nn.Module):
    """Stages of `depth` conv-BN-ReLU blocks; every stage but the last halves the resolution (max-pool).

    Input (N, in_channels, H, W) float, output (N, num_classes) logits. Works for any H, W >= 2**(stages-1).
    `width`, when given, replaces widths by width, 2 width, 4 width, ... (as many stages): one knob for sweeps.
    """

    #: the layer of class scores, one row per class (the classification task's output_layer)
    output_layer = "head.2"

    def __init__(self, in_channels: int, num_classes: int, widths=(32, 64, 128), depth: int = 2, dropout: float = 0.2,
                 width: int | None = None):
        super().__init__()
        if width is not None:
            if width < 1:
                raise ValueError(f"model.width={width} should be a positive number of channels")
            widths = tuple(width * 2 ** i for i in range(len(widths)))
        if not widths or depth < 1:
            raise ValueError(f"CNN needs at least one stage and depth >= 1 (got widths={widths}, depth={depth})")
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            for _ in range(depth):
                layers.append(conv_bn_relu(c, w))
                c = w
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)))
