"""torchvision's ImageNet architectures by name, trained from scratch for our number of classes."""
from __future__ import annotations

from torch import Tensor, nn


class _RepeatChannels(nn.Module):
    """Feeds grey images to a 3-channel network."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.expand(-1, 3, -1, -1))


def torchvision_model(in_channels: int, num_classes: int, name: str = "resnet18") -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(f"model.name={name} is not a torchvision classification model; choose one of: "
                         + ", ".join(sorted(available)))
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if in_channels == 1:
        return _RepeatChannels(net)
    if in_channels != 3:
        raise ValueError(f"torchvision models take 1 or 3 channels, not {in_channels}")
    return net
