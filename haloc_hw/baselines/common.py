"""What every baseline rank allocator shares: the budget, model totals, and the ranks.json plan.

A baseline sees the same inputs as the HALOC search (a :class:`~haloc_hw.search.budget.CostLookup`,
the per-layer candidate grid and a :class:`~haloc_hw.search.budget.Budget`) and produces the
same :class:`~haloc_hw.search.plan.RankPlan`, so its ``ranks.json`` reads exactly like a
search's: probability 1 for the chosen candidate, no repair, and a note saying which method
chose the ranks. Totals are computed as the search computes them (per-component sums over
layers, combined at the end, so an EDP budget is total energy x total cycles).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from haloc_hw.errors import HalocError
from haloc_hw.search.budget import (
    Budget,
    CostLookup,
    budget_key,
    candidate_vectors,
    combine,
    components,
    format_cost,
    resolve_budget,
)
from haloc_hw.search.plan import RankPlan, make_plan

log = logging.getLogger(__name__)

Rank = tuple[int, int]


@dataclass
class BaselineResult:
    """A baseline's plan (``ranks.json``) and what the method found on the way (``baseline.json``)."""

    method: str
    plan: RankPlan
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ranks(self) -> dict[str, Rank]:
        return self.plan.ranks

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "ranks": {n: list(r) for n, r in self.ranks.items()},
                "total_cost": self.plan.total_cost, "budget": self.plan.budget, "metric": self.plan.metric,
                "budget_met": self.plan.met, "details": self.details}


class Problem:
    """The budgeted choice of one candidate per layer, with fast model totals.

    ``candidates`` maps every decomposable layer to its (r1, r2) grid (ascending, as the table
    lists them); layers of ``costs`` outside it count at their original cost.
    """

    def __init__(self, costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], budget: Budget,
                 source: str | None = None) -> None:
        self.costs = costs
        self.candidates: dict[str, list[Rank]] = {}
        for name, cands in candidates.items():
            grid = sorted({(int(a), int(b)) for a, b in cands})
            if grid:
                self.candidates[name] = grid
        if not self.candidates:
            raise HalocError("no layer has rank candidates", file=source, key="candidates",
                             fix="build the table for a model with dense convolutions")
        self.metric = budget.metric
        self.budget_spec = budget
        self.source = source
        self.budget, self.range = resolve_budget(budget, costs, self.candidates, source=source)
        self.vectors = candidate_vectors(costs, self.candidates, self.metric)
        self.fixed = list(self.range.fixed_components)
        self.tol = self.budget * 1e-9

    @property
    def names(self) -> list[str]:
        return list(self.candidates)

    def components_of(self, choice: Mapping[str, int]) -> list[float]:
        """Per-component model totals of a choice (layer -> index into its candidate grid)."""
        out = list(self.fixed)
        for name, j in choice.items():
            for i, v in enumerate(self.vectors[name][j]):
                out[i] += v
        return out

    def total(self, choice: Mapping[str, int]) -> float:
        return combine(self.components_of(choice), self.metric)

    def meets(self, choice: Mapping[str, int]) -> bool:
        return self.total(choice) <= self.budget + self.tol

    def skipped(self) -> dict[str, str]:
        """The layers of the table kept undecomposed, and why (as the search lists them in ranks.json)."""
        out = {}
        lookup = getattr(self.costs, "layer", None)
        for name in self.costs.layers():
            if name in self.candidates:
                continue
            info = lookup(name) if callable(lookup) else None
            if info is not None and not getattr(info, "decomposable", True):
                out[name] = f"{getattr(info, 'kind', 'layer')} is not Tucker-2 decomposable"
            else:
                out[name] = "no rank candidate with a cost in the table"
        return out

    def require(self, given: Mapping[str, Any], *, what: str, key: str, item: str) -> None:
        """Raise one :class:`HalocError` naming the layers with candidates that ``given`` lacks."""
        missing = [n for n in self.names if n not in given]
        if missing:
            raise HalocError(f"no {what} for layers {', '.join(missing[:8])}", key=key,
                             fix=f"pass {item} for every layer with candidates")

    def unreachable(self, method: str, minimum: float, what: str) -> HalocError:
        """The error for a budget this method cannot meet, naming the least it reaches."""
        ratio = minimum / self.range.original if self.range.original else float("nan")
        return HalocError(
            f"the {method} baseline cannot meet budget {self.budget_spec.text or self.budget_spec.describe()} "
            f"({format_cost(self.budget, self.metric)}): {what} reaches at best {ratio:.4g} of the original = "
            f"{format_cost(minimum, self.metric)}",
            file=self.source, key=budget_key(self.metric),
            fix=f"raise the budget to at least {ratio:.4g}, or add smaller rank candidates to the table",
        )

    def plan(self, choice: Mapping[str, int], method: str, note: str) -> RankPlan:
        """The ``ranks.json`` plan of a choice: one-hot probabilities, no repair."""
        probs = {n: [1.0 if j == choice[n] else 0.0 for j in range(len(c))] for n, c in self.candidates.items()}
        orig = {n: [float(self.costs.original_cost(n, c)) for c in components(self.metric)] for n in self.candidates}
        plan = make_plan(probs, self.candidates, self.vectors, orig, metric=self.metric, budget=self.budget,
                         budget_text=self.budget_spec.text or str(self.budget_spec.value), fixed_cost=self.fixed,
                         repair=False)
        plan.repair_rule = f"none: ranks chosen by the {method} baseline"
        plan.note = note
        plan.skipped = self.skipped()
        if not plan.met:  # the allocators only return choices that meet the budget
            raise AssertionError(f"{method} produced ranks over budget ({plan.total_cost} > {plan.budget})")
        return plan
