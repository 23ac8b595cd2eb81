"""Baseline rank allocators at the same budget as the HALOC search: uniform, VBMF, greedy and ALDS.

Each takes the cost table (any :class:`~haloc_hw.rankspace.CostLookup`), the candidate
grid per layer and a parsed :class:`~haloc_hw.rankspace.Budget`, and returns a
:class:`BaselineResult` whose ``plan`` is a :class:`~haloc_hw.rankspace.RankPlan`, saved as
``ranks.json`` in the search's format. :func:`allocate` picks the method by name.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from haloc_hw.baselines.alds import alds_ranks
from haloc_hw.baselines.common import BaselineResult, Problem
from haloc_hw.baselines.greedy import candidate_errors, greedy_ranks
from haloc_hw.baselines.uniform import uniform_ranks
from haloc_hw.baselines.vbmf import EVBMFResult, estimate_layer_ranks, evbmf, vbmf_ranks
from haloc_hw.errors import HalocError
from haloc_hw.rankspace import Budget, CostLookup, Rank

METHODS: tuple[str, ...] = ("uniform", "vbmf", "greedy", "alds")


def conv_weights(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The weights of the named ``Conv2d`` modules of ``model`` (detached, on the CPU)."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        module = modules.get(name)
        if not isinstance(module, nn.Conv2d):
            raise HalocError(f"the model has no convolution '{name}'", key=name,
                             fix="use the cost table built for this model")
        out[name] = module.weight.detach().cpu()
    return out


def allocate(method: str, costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], budget: Budget,
             model: nn.Module, *, source: str | None = None, progress: bool = False) -> BaselineResult:
    """Run baseline ``method`` (one of :data:`METHODS`) for ``model`` on ``costs``."""
    if method not in METHODS:
        raise HalocError(f"unknown baseline method '{method}'", key="--method", fix=f"use one of {', '.join(METHODS)}")
    weights = conv_weights(model, [n for n, c in candidates.items() if c])
    if method == "uniform":
        channels = {n: (int(w.shape[0]), int(w.shape[1])) for n, w in weights.items()}
        return uniform_ranks(costs, candidates, channels, budget, source=source)
    if method == "vbmf":
        return vbmf_ranks(costs, candidates, weights, budget, source=source)
    if method == "alds":
        return alds_ranks(costs, candidates, weights, budget, source=source, progress=progress)
    return greedy_ranks(costs, candidates, weights, budget, source=source, progress=progress)


__all__ = [
    "METHODS", "BaselineResult", "alds_ranks", "EVBMFResult", "Problem", "allocate", "candidate_errors", "conv_weights",
    "estimate_layer_ranks", "evbmf", "greedy_ranks", "uniform_ranks", "vbmf_ranks",
]
