"""The model registry: each builder registers itself with ``@register_model``.

A model's name is its builder's function name, written once, where the builder is defined.
The command line needs the names (``--model`` help and checks) without paying for torch, and
the builder modules import torch; so the names are read from the builder modules' source
(:mod:`ast`, a few milliseconds) and a builder module is imported only when a model is built.
``tests/test_models.py`` checks that the names read from the source are the ones registered.

To add a model, decorate its builder ``fn(num_classes=10, in_channels=3) -> nn.Module`` with
``@register_model`` (``@register_model(dataset="imagenet")`` for a network sized for
ImageNet inputs) in one of :data:`BUILDER_MODULES`.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from haloc_hw.errors import HalocError

#: The modules holding registered builders, in the order their models are listed.
BUILDER_MODULES: tuple[str, ...] = (
    "haloc_hw.models.resnet_cifar",
    "haloc_hw.models.vgg_cifar",
    "haloc_hw.models.torchvision_models",
)
#: The dataset a model is sized for unless its registration says otherwise.
DEFAULT_DATASET = "cifar10"

Builder = TypeVar("Builder", bound=Callable[..., Any])


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, the module defining its builder, the dataset it is sized for."""

    name: str
    module: str
    dataset: str = DEFAULT_DATASET


_BUILDERS: dict[str, Callable[..., Any]] = {}
_DATASETS: dict[str, str] = {}


def register_model(fn: Builder | None = None, *, dataset: str = DEFAULT_DATASET) -> Any:
    """Register ``fn`` as the builder of the model named ``fn.__name__``.

    Used bare (``@register_model``) or with the dataset the network is sized for
    (``@register_model(dataset="imagenet")``). The keyword must be a literal string: the
    listing reads it from the source.
    """

    def add(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model '{name}' is registered twice")
        _BUILDERS[name] = builder
        _DATASETS[name] = dataset
        return builder

    return add(fn) if fn is not None else add


def _read_entries(module: str) -> list[ModelEntry]:
    """The ``@register_model`` functions of ``module``, read from its source without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise HalocError(f"model module '{module}' is missing", key="model", fix="reinstall haloc-hw")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)
    out = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            target = call.func if call is not None else deco
            if isinstance(target, ast.Name) and target.id == "register_model":
                dataset = DEFAULT_DATASET
                for kw in call.keywords if call is not None else []:
                    if kw.arg == "dataset" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        dataset = kw.value.value
                out.append(ModelEntry(node.name, module, dataset))
    return out


@functools.cache
def model_entries() -> tuple[ModelEntry, ...]:
    """Every registered model, in :data:`BUILDER_MODULES` order (no builder module is imported)."""
    return tuple(entry for module in BUILDER_MODULES for entry in _read_entries(module))


def model_names() -> tuple[str, ...]:
    """The names ``build_model`` accepts."""
    return tuple(entry.name for entry in model_entries())


def check_model_name(name: str, key: str = "--model") -> ModelEntry:
    """The entry of ``name`` (case and ``-``/``_`` ignored); unknown names raise :class:`HalocError`
    naming ``key``, the option or field the name came from."""
    wanted = str(name).lower().replace("-", "_")
    for entry in model_entries():
        if entry.name == wanted:
            return entry
    raise HalocError(f"unknown model '{name}'", key=key, fix=f"use one of {', '.join(model_names())}")


def get_builder(name: str) -> Callable[..., Any]:
    """The builder of ``name``, importing the module that registers it."""
    entry = check_model_name(name)
    importlib.import_module(entry.module)
    return _BUILDERS[entry.name]


def registered() -> dict[str, str]:
    """Name -> dataset of every builder registered so far by import (for checking the listing)."""
    return dict(_DATASETS)
