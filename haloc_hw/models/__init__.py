"""The networks haloc-hw compresses, by name.

``build_model(name, num_classes, in_channels)`` returns a randomly initialised model:
``resnet20`` and ``vgg16`` are the CIFAR-style networks of the HALOC paper's CIFAR
experiments; ``resnet18`` and ``mobilenet_v2`` are torchvision's ImageNet networks. Each
builder registers itself (:mod:`haloc_hw.models.registry`); importing this package, listing
the names and the dataset helpers need no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from haloc_hw.errors import HalocError
from haloc_hw.models.registry import check_model_name, get_builder, model_entries, model_names, register_model

if TYPE_CHECKING:
    from torch import nn

# Per-sample input (C, H, W) of each dataset haloc_hw.data knows (plus a few aliases).
DATASET_INPUT_SIZES: dict[str, tuple[int, int, int]] = {
    "fashion-mnist": (1, 28, 28),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "synthetic": (3, 32, 32),
    "imagenet": (3, 224, 224),
}


def _check_name(name: str) -> str:
    return check_model_name(name).name


def build_model(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A fresh (untrained) model; unknown names raise :class:`HalocError` listing the known ones."""
    key = _check_name(name)
    for what, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HalocError(f"{what} must be a positive integer, got {value!r}", key=what)
    return get_builder(key)(num_classes=num_classes, in_channels=in_channels)


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
    return check_model_name(name).dataset


def __getattr__(name: str) -> Any:
    """``MODEL_NAMES`` and ``IMAGENET_MODELS``, read from the registry on first use."""
    if name == "MODEL_NAMES":
        return model_names()
    if name == "IMAGENET_MODELS":  # the torchvision networks, sized for ImageNet inputs; the others for CIFAR
        return tuple(e.name for e in model_entries() if e.dataset == "imagenet")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATASET_CLASSES", "DATASET_INPUT_SIZES", "IMAGENET_MODELS", "MODEL_NAMES", "build_model",
           "default_dataset", "default_input_size", "default_num_classes", "model_names", "register_model"]
