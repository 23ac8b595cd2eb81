"""CIFAR-style VGG-16 with batch normalisation.

The 13 convolutions of VGG-16 (configuration D, Simonyan & Zisserman 2015) with BN after
each, and a 512-wide classifier (512 → 512 → classes, with dropout) as in the CIFAR VGG-16
of Li et al. (2017) that low-rank and pruning papers, HALOC included, compare on (about
15.0M parameters and 313M multiply-adds at 32×32). Max-pools use ``ceil_mode`` so inputs smaller than 32×32 (Fashion-MNIST's
28×28) still reach 1×1 after five pools, and an adaptive average pool makes larger inputs
(224×224) work with the same classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from haloc_hw.models.registry import register_model

VGG16_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class CifarVGG(nn.Module):
    def __init__(self, config: tuple[int | str, ...] = VGG16_CONFIG, num_classes: int = 10, in_channels: int = 3, width: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False), nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(channels, width),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(width, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model
def vgg16(num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    return CifarVGG(VGG16_CONFIG, num_classes=num_classes, in_channels=in_channels)
