"""Uniform ranks: one rank fraction for every decomposable layer, the largest that meets the budget.

A candidate ``(r1, r2)`` of a layer with ``M`` output and ``C`` input channels keeps the
fraction ``max(r1 / M, r2 / C)`` of its channels. For a fraction ``f`` each layer takes its
largest candidate with fraction ``<= f`` (its smallest candidate when none is that small,
since no layer may go without one); at ``f >= 1`` a layer stays as it is (keeping the layer is
the fraction-1 option, and wins ties). The fractions tried are 1 and those that occur on the
candidate grids, from the largest down; the first whose model total meets the budget wins.
This is the usual "same compression everywhere" baseline, restricted to ranks the table has
costs for.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

from haloc_hw.baselines.common import BaselineResult, Problem
from haloc_hw.rankspace import Budget, CostLookup, Rank

log = logging.getLogger(__name__)


def rank_fraction(rank: Rank, channels: tuple[int, int]) -> float:
    """``max(r1 / M, r2 / C)`` for ``channels = (M, C)``."""
    (r1, r2), (m, c) = rank, channels
    return max(r1 / m, r2 / c)


def choice_at_fraction(candidates: Mapping[str, Sequence[Rank]], channels: Mapping[str, tuple[int, int]],
                       fraction: float, *, keep: bool = False) -> dict[str, int]:
    """Per layer, the index of its largest candidate whose fraction is ``<= fraction`` (else its smallest).

    ``keep``: at ``fraction >= 1`` the layer's index is ``len(candidates)``, keeping it undecomposed.
    """
    choice = {}
    for name, cands in candidates.items():
        if keep and fraction >= 1.0 - 1e-12:
            choice[name] = len(cands)
            continue
        fracs = [rank_fraction(c, channels[name]) for c in cands]
        fitting = [j for j, f in enumerate(fracs) if f <= fraction * (1 + 1e-12)]
        if fitting:
            choice[name] = max(fitting, key=lambda j: (fracs[j], cands[j]))
        else:
            choice[name] = min(range(len(cands)), key=lambda j: (fracs[j], cands[j]))
    return choice


def uniform_ranks(costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], channels: Mapping[str, tuple[int, int]],
                  budget: Budget, *, source: str | None = None) -> BaselineResult:
    """The largest uniform rank fraction on the candidate grid whose ranks meet ``budget``.

    ``channels`` maps each layer to ``(M, C)`` (output, input channels). Raises
    :class:`HalocError` naming the least reachable cost when even the smallest fraction is
    over budget (or the budget is below what any ranks reach).
    """
    problem = Problem(costs, candidates, budget, source=source)
    problem.require(channels, what="channel counts", key="channels", item="(M, C)")
    fractions = sorted({1.0} | {rank_fraction(c, channels[n]) for n in problem.names for c in problem.candidates[n]},
                       reverse=True)
    tried: list[dict[str, float]] = []
    best_total = float("inf")
    for f in fractions:
        choice = choice_at_fraction(problem.candidates, channels, f, keep=True)
        total = problem.total(choice)
        tried.append({"fraction": f, "total": total})
        best_total = min(best_total, total)
        if problem.meets(choice):
            note = (f"uniform rank fraction {f:.4g} (largest of {len(fractions)} grid fractions within the budget); "
                    f"total {total:.6g} <= budget {problem.budget:.6g}")
            log.info("uniform baseline: %s", note)
            plan = problem.plan(choice, "uniform", note)
            return BaselineResult("uniform", plan, {"fraction": f, "fractions_tried": tried})
    raise problem.unreachable("uniform", best_total, "the smallest uniform fraction")
