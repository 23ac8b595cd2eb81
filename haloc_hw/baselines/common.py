"""What every baseline rank allocator shares: the budget, model totals, and the ranks.json plan.

A baseline sees the same inputs as the HALOC search (a :class:`~haloc_hw.rankspace.CostLookup`,
the per-layer candidate grid and a :class:`~haloc_hw.rankspace.Budget`) and produces the
same :class:`~haloc_hw.rankspace.RankPlan`, so its ``ranks.json`` reads exactly like a
search's: probability 1 for the chosen candidate, no repair, and a note saying which method
chose the ranks. Totals are computed as the search computes them (per-component sums over
layers, combined at the end, so an EDP budget is total energy x total cycles).

Keeping a layer is always an option and no allocator sees a candidate that costs at least its
original layer (:func:`haloc_hw.rankspace.dominated`): :class:`Problem` drops such candidates,
layers left with none stay undecomposed, and every other layer's option ``problem.keep(name)``
(one past its candidates) is the layer itself, priced at its original cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from haloc_hw.errors import HalocError
from haloc_hw.rankspace import (
    Budget,
    CostLookup,
    Rank,
    RankPlan,
    budget_key,
    candidate_vectors,
    combine,
    components,
    dominated,
    format_cost,
    make_plan,
    resolve_budget,
)

log = logging.getLogger(__name__)


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
        self.metric = budget.metric
        comps = components(self.metric)
        grids: dict[str, list[Rank]] = {}
        for name, cands in candidates.items():
            grid = sorted({(int(a), int(b)) for a, b in cands})
            if grid:
                grids[name] = grid
        if not grids:
            raise HalocError("no layer has rank candidates", file=source, key="candidates",
                             fix="build the table for a model with dense convolutions")
        self.grids = grids  # every candidate given, dominated ones too (ascending)
        self.originals = {n: [float(costs.original_cost(n, c)) for c in comps] for n in grids}
        all_vectors = candidate_vectors(costs, grids, self.metric)
        self.candidates: dict[str, list[Rank]] = {}
        self.vectors: dict[str, list[list[float]]] = {}
        self.always_kept: dict[str, str] = {}
        for name, grid in grids.items():
            good = [j for j, v in enumerate(all_vectors[name]) if not dominated(v, self.originals[name])]
            if good:
                self.candidates[name] = [grid[j] for j in good]
                self.vectors[name] = [all_vectors[name][j] for j in good] + [self.originals[name]]
            else:
                self.always_kept[name] = "kept undecomposed: every rank candidate costs at least the original layer"
        if not self.candidates:
            raise HalocError("no rank candidate of any layer costs less than its original layer", file=source,
                             key="candidates", fix="use a table with smaller rank candidates (a larger --step)")
        self.budget_spec = budget
        self.source = source
        self.budget, self.range = resolve_budget(budget, costs, self.candidates, source=source)
        self.fixed = list(self.range.fixed_components)
        self.tol = self.budget * 1e-9

    def keep(self, name: str) -> int:
        """The option index meaning "keep ``name`` undecomposed" (one past its candidates)."""
        return len(self.candidates[name])

    def grid_values(self, name: str, values: Sequence[Any]) -> list[Any]:
        """``values`` given per candidate of the full grid, restricted to the candidates kept here."""
        index = {rank: j for j, rank in enumerate(self.grids[name])}
        return [values[index[rank]] for rank in self.candidates[name]]

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
            if name in self.grids:
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
        """The ``ranks.json`` plan of a choice: one-hot probabilities, no repair; kept layers in ``skipped``."""
        decomposed = [n for n in self.names if choice[n] != self.keep(n)]
        kept = [n for n in self.names if choice[n] == self.keep(n)]
        fixed = [f + sum(self.originals[n][i] for n in kept) for i, f in enumerate(self.fixed)]
        probs = {n: [1.0 if j == choice[n] else 0.0 for j in range(len(self.candidates[n]))] for n in decomposed}
        plan = make_plan(probs, {n: self.candidates[n] for n in decomposed},
                         {n: self.vectors[n][:-1] for n in decomposed}, {n: self.originals[n] for n in decomposed},
                         metric=self.metric, budget=self.budget,
                         budget_text=self.budget_spec.text or str(self.budget_spec.value), fixed_cost=fixed,
                         repair=False)
        plan.repair_rule = f"none: ranks chosen by the {method} baseline"
        plan.note = note
        plan.skipped = {**self.skipped(), **self.always_kept,
                        **{n: f"kept undecomposed by the {method} baseline" for n in kept}}
        if not plan.met:  # the allocators only return choices that meet the budget
            raise AssertionError(f"{method} produced ranks over budget ({plan.total_cost} > {plan.budget})")
        return plan
