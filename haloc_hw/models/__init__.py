"""The networks haloc-hw compresses, by name.

``build_model(name, num_classes, in_channels)`` returns a randomly initialised model:
``resnet20`` and ``vgg16`` are the CIFAR-style networks of the HALOC paper's CIFAR
experiments; ``resnet18`` and ``mobilenet_v2`` are torchvision's ImageNet networks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a model is built: table readers need the dataset defaults alone
    from torch import nn

from haloc_hw.errors import HalocError

MODEL_NAMES: tuple[str, ...] = ("resnet20", "vgg16", "resnet18", "mobilenet_v2")
# The torchvision networks, sized for ImageNet inputs; the others for CIFAR.
IMAGENET_MODELS: tuple[str, ...] = ("resnet18", "mobilenet_v2")

# Per-sample input (C, H, W) of each dataset haloc_hw.data knows (plus a few aliases).
DATASET_INPUT_SIZES: dict[str, tuple[int, int, int]] = {
    "fashion-mnist": (1, 28, 28),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "synthetic": (3, 32, 32),
    "imagenet": (3, 224, 224),
}


def _builders() -> dict[str, Callable[..., nn.Module]]:
    from haloc_hw.models.resnet_cifar import resnet20
    from haloc_hw.models.torchvision_models import mobilenet_v2, resnet18
    from haloc_hw.models.vgg_cifar import vgg16

    return {"resnet20": resnet20, "vgg16": vgg16, "resnet18": resnet18, "mobilenet_v2": mobilenet_v2}


def _check_name(name: str) -> str:
    key = str(name).lower().replace("-", "_")
    if key not in MODEL_NAMES:
        raise HalocError(f"unknown model '{name}'", key="model", fix=f"use one of {', '.join(MODEL_NAMES)}")
    return key


def build_model(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A fresh (untrained) model; unknown names raise :class:`HalocError` listing the known ones."""
    key = _check_name(name)
    for what, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HalocError(f"{what} must be a positive integer, got {value!r}", key=what)
    return _builders()[key](num_classes=num_classes, in_channels=in_channels)


def default_input_size(name: str, dataset: str) -> tuple[int, int, int]:
    """``(C, H, W)`` a model gets on a dataset (the dataset decides; the name is validated)."""
    _check_name(name)
    key = str(dataset).lower().replace("_", "-")
    if key not in DATASET_INPUT_SIZES:
        raise HalocError(
            f"unknown dataset '{dataset}'", key="dataset", fix=f"use one of {', '.join(DATASET_INPUT_SIZES)}"
        )
    return DATASET_INPUT_SIZES[key]


#: Classes of the datasets whose final layer is not 10 wide.
DATASET_CLASSES: dict[str, int] = {"imagenet": 1000, "cifar100": 100}


def default_num_classes(dataset: str) -> int:
    """Width of the final layer for a dataset: :data:`DATASET_CLASSES`, else 10 (CIFAR-10, MNIST, ...)."""
    return DATASET_CLASSES.get(str(dataset).lower(), 10)


def default_dataset(name: str) -> str:
    """The dataset a model is sized for when none is given: ImageNet or CIFAR-10.

    The name is read like :func:`build_model` reads it (``MobileNet-V2`` is ``mobilenet_v2``).
    """
    return "imagenet" if _check_name(name) in IMAGENET_MODELS else "cifar10"


__all__ = ["DATASET_CLASSES", "DATASET_INPUT_SIZES", "IMAGENET_MODELS", "MODEL_NAMES", "build_model",
           "default_dataset", "default_input_size", "default_num_classes"]
