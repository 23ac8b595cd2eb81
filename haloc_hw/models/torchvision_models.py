"""torchvision's ResNet-18 and MobileNetV2 (randomly initialised), with the stem adapted to
the number of input channels (Fashion-MNIST has one)."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from haloc_hw.models.registry import register_model


def _replace_stem(old: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        bias=old.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    return new


@register_model(dataset="imagenet")
def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    model = tvm.resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = _replace_stem(model.conv1, in_channels)
    return model


@register_model(dataset="imagenet")
def mobilenet_v2(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    model = tvm.mobilenet_v2(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.features[0][0] = _replace_stem(model.features[0][0], in_channels)
    return model
