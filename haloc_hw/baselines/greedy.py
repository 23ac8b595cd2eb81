"""Greedy ranks: trade table cost for approximation error, one step at a time.

Start with every layer as it is (the original layer is every layer's largest option; candidates
that cost at least as much are not options, see :class:`~haloc_hw.baselines.common.Problem`).
While the model total is over budget,
consider for each layer the step to its next smaller candidate that lowers the model total
(candidates that would not save anything, as can happen on measured GPU tables, are skipped
over), and take the step with the most cost saved per unit of added approximation error,
where the error of a candidate is the relative Frobenius error ``||W - W_hat|| / ||W||`` of
the Tucker-2 approximation at that rank (:func:`haloc_hw.decompose.relative_error`). Ties go
to the larger saving, then to the layer name.

The sequence of steps does not depend on the budget (only where it stops does), so a larger
budget never gives a smaller rank to any layer: the allocation is monotone in the budget.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import torch

from haloc_hw.baselines.common import BaselineResult, Problem
from haloc_hw.rankspace import Budget, CostLookup, Rank

log = logging.getLogger(__name__)

MIN_ERROR_STEP = 1e-9  # an added error below this counts as this (a free step is taken first)

ErrorFn = Callable[[torch.Tensor, int, int], float]


def candidate_errors(weights: Mapping[str, torch.Tensor], candidates: Mapping[str, Sequence[Rank]],
                     error_fn: ErrorFn | None = None, progress: bool = False) -> dict[str, list[float]]:
    """Relative Tucker-2 error of every candidate of every layer (``error_fn`` defaults to ``relative_error``)."""
    from tqdm import tqdm

    if error_fn is None:
        from haloc_hw.decompose import relative_error as error_fn
    out: dict[str, list[float]] = {}
    for name in tqdm(list(candidates), desc="Tucker-2 errors", unit="layer", disable=not progress):
        w = weights[name]
        out[name] = [float(error_fn(w, int(r1), int(r2))) for r1, r2 in candidates[name]]
    return out


def greedy_ranks(costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], weights: Mapping[str, torch.Tensor],
                 budget: Budget, *, source: str | None = None, errors: Mapping[str, Sequence[float]] | None = None,
                 progress: bool = False) -> BaselineResult:
    """Greedy cost-per-error rank lowering until ``budget`` is met (see the module docstring).

    ``errors`` (per layer, per candidate in ascending grid order) may be given to skip the
    Tucker-2 decompositions; otherwise they are computed from ``weights``.
    """
    problem = Problem(costs, candidates, budget, source=source)
    given_errors = errors is not None
    if errors is None:
        problem.require(weights, what="weights", key="weights", item="the base model's conv weights")
        errors = candidate_errors(weights, problem.candidates, progress=progress)
    if given_errors:  # per candidate of the full grid: keep the candidates the problem kept
        errs = {n: [float(v) for v in problem.grid_values(n, list(errors[n]))] + [0.0] for n in problem.names}
    else:
        errs = {n: [float(v) for v in errors[n]] + [0.0] for n in problem.names}  # the original layer is exact
    choice = {n: problem.keep(n) for n in problem.names}
    total = problem.total(choice)
    steps: list[dict[str, object]] = []
    while total > problem.budget + problem.tol:
        best = None
        for name in problem.names:
            j = choice[name]
            for k in range(j - 1, -1, -1):  # the next smaller candidate that actually saves cost
                trial = dict(choice)
                trial[name] = k
                new_total = problem.total(trial)
                saved = total - new_total
                if saved > 0:
                    added = max(errs[name][k] - errs[name][j], MIN_ERROR_STEP)
                    key = (saved / added, saved, name)
                    if best is None or key > best[0]:
                        best = (key, name, k, new_total, added)
                    break
        if best is None:
            raise problem.unreachable("greedy", total, "lowering ranks from the original layers")
        (_, saved, _), name, k, new_total, added = best
        steps.append({"layer": name, "from": _option(problem, name, choice[name]),
                      "to": list(problem.candidates[name][k]), "saved": saved, "added_error": added,
                      "total": new_total})
        choice[name] = k
        total = new_total
    note = (f"greedy cost-per-error lowering from the original layers in {len(steps)} step(s); "
            f"total {total:.6g} <= budget {problem.budget:.6g}")
    log.info("greedy baseline: %s", note)
    plan = problem.plan(choice, "greedy", note)
    return BaselineResult("greedy", plan, {"steps": steps, "errors": errs})


def _option(problem: Problem, name: str, j: int) -> list[int] | str:
    return "original" if j == problem.keep(name) else list(problem.candidates[name][j])
