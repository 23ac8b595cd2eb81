"""ALDS ranks: minimise the largest relative approximation error over layers, within the budget.

The allocation rule of ALDS (Liebenwein, Maalouf, Gal, Feldman and Rus, "Compressing Neural
Networks: Towards Determining the Optimal Layer-wise Decomposition", NeurIPS 2021): choose the
per-layer ranks that minimise the *maximum* relative error of any layer's approximation,
subject to the global budget. Here the error of a candidate is the relative Frobenius error
``||W - W_hat|| / ||W||`` of its Tucker-2 approximation (the greedy baseline's error), keeping
the layer has error 0, and the budget is the cost table's (any metric), so ALDS competes on
the same cost model and candidate grid as HALOC and the other baselines.

The minimax problem over a discrete grid is solved exactly: for a bound ``e`` every layer takes
its cheapest option with error ``<= e``; that plan is the cheapest with maximum error ``<= e``,
so the least ``e`` among the candidates' errors whose plan meets the budget is the optimum
(scanned in ascending order). What the budget still leaves is then spent without raising the
maximum: repeatedly, the layer with the largest error moves to its cheapest option of smaller
error if the model still fits, else the next layer is tried (a lexicographic refinement:
ALDS spends its whole budget, as the other allocators do).
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import torch

from haloc_hw.baselines.common import BaselineResult, Problem
from haloc_hw.rankspace import Budget, CostLookup, Rank, combine

log = logging.getLogger(__name__)


def _cheapest_within(errors: Sequence[float], costs: Sequence[float], bound: float) -> int:
    """Index of the cheapest option with error ``<= bound`` (ties: the smaller error); -1 if none."""
    fitting = [j for j, e in enumerate(errors) if e <= bound]
    return min(fitting, key=lambda j: (costs[j], errors[j], j)) if fitting else -1


def alds_ranks(costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], weights: Mapping[str, torch.Tensor],
               budget: Budget, *, source: str | None = None, errors: Mapping[str, Sequence[float]] | None = None,
               progress: bool = False) -> BaselineResult:
    """Minimax-error ranks within ``budget`` (module docstring).

    ``errors`` (per layer, per candidate of its ascending grid) may be given instead of ``weights``.
    """
    from haloc_hw.baselines.greedy import candidate_errors

    problem = Problem(costs, candidates, budget, source=source)
    if errors is None:
        problem.require(weights, what="weights", key="weights", item="the base model's conv weights")
        errs = {n: list(v) + [0.0] for n, v in candidate_errors(weights, problem.candidates, progress=progress).items()}
    else:
        errs = {n: [float(v) for v in problem.grid_values(n, list(errors[n]))] + [0.0] for n in problem.names}
    layer_cost = {n: [combine(v, problem.metric) for v in problem.vectors[n]] for n in problem.names}
    bounds = sorted({e for v in errs.values() for e in v})
    choice = None
    for bound in bounds:
        trial = {n: _cheapest_within(errs[n], layer_cost[n], bound) for n in problem.names}
        if all(j >= 0 for j in trial.values()) and problem.meets(trial):
            choice, max_error = trial, bound
            break
    if choice is None:
        cheapest = {n: min(range(len(layer_cost[n])), key=lambda j: layer_cost[n][j]) for n in problem.names}
        raise problem.unreachable("alds", problem.total(cheapest), "the cheapest candidates")
    minimax = max(errs[n][j] for n, j in choice.items())
    upgrades = 0
    while True:  # spend the rest without raising the maximum: the worst layer first
        moved = False
        for name in sorted(problem.names, key=lambda n: (-errs[n][choice[n]], n)):
            current = errs[name][choice[name]]
            lower = [j for j, e in enumerate(errs[name]) if e < current]
            if not lower:
                continue
            better = min(lower, key=lambda j: (layer_cost[name][j], errs[name][j], j))
            trial = {**choice, name: better}
            if problem.meets(trial):
                choice, moved = trial, True
                upgrades += 1
                break
        if not moved:
            break
    final_max = max(errs[n][j] for n, j in choice.items())
    total = problem.total(choice)
    note = (f"ALDS minimax relative error {minimax:.4g} (after spending the rest of the budget {final_max:.4g}, "
            f"{upgrades} upgrade(s)); total {total:.6g} <= budget {problem.budget:.6g}")
    log.info("alds baseline: %s", note)
    plan = problem.plan(choice, "alds", note)
    return BaselineResult("alds", plan, {"minimax_error": minimax, "max_error": final_max, "upgrades": upgrades,
                                         "errors": {n: errs[n][:-1] for n in problem.names},
                                         "chosen_error": {n: errs[n][j] for n, j in choice.items()}})
