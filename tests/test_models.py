import pytest
import torch

from src.models.cnn import CNN
from src.models.resnet import ResNet
from src.models.tv import torchvision_model


@pytest.mark.parametrize("c,h,w", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 45, 61)])
def test_cnn_shapes(c, h, w):
    net = CNN(in_channels=c, num_classes=7, widths=(8, 16, 32), depth=2)
    assert net(torch.randn(4, c, h, w)).shape == (4, 7)


def test_cnn_width_and_depth_change_the_network():
    small = sum(p.numel() for p in CNN(1, 10, widths=(8,), depth=1).parameters())
    big = sum(p.numel() for p in CNN(1, 10, widths=(8, 16), depth=3).parameters())
    assert big > small
    with pytest.raises(ValueError):
        CNN(1, 10, widths=(), depth=1)


@pytest.mark.parametrize("blocks,width", [((2, 2, 2, 2), 8), ((1, 1), 4)])
def test_resnet_shapes(blocks, width):
    net = ResNet(in_channels=3, num_classes=10, blocks=blocks, width=width)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_has_resnet18_size():
    n = sum(p.numel() for p in ResNet(3, 10).parameters())
    assert 11.0e6 < n < 11.3e6  # CIFAR ResNet-18: 11.17M parameters


def test_torchvision_by_name_and_grey_input():
    net = torchvision_model(in_channels=1, num_classes=5, name="resnet18")
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 5)
    with pytest.raises(ValueError, match="not a torchvision classification model"):
        torchvision_model(3, 5, name="resnet19")


def test_cnn_width_scales_every_stage():
    from src.models.cnn import CNN

    net = CNN(in_channels=1, num_classes=10, width=16)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64]
