"""The result of a search: chosen ranks per layer, their predicted cost, and the budget check.

When the argmax ranks exceed the budget, :func:`make_plan` repairs them greedily and records
every move in the plan (and thus in ``ranks.json``):

    while the total exceeds the budget: take the searched layer whose current candidate is
    the most expensive among layers that still have a cheaper candidate, and move it to the
    cheaper candidate with the highest probability p (ties: the more expensive of them,
    i.e. the smallest step down).

The budget was checked to be reachable before the search, so the loop always ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from haloc_hw.errors import HalocError
from haloc_hw.fileio import write_json_atomic
from haloc_hw.search.budget import combine

Rank = tuple[int, int]

REPAIR_RULE = (
    "greedy: while over budget, move the searched layer with the most expensive current candidate "
    "(among layers with a cheaper one) to its most probable cheaper candidate"
)


@dataclass
class LayerPlan:
    name: str
    r1: int
    r2: int
    cost: float
    original_cost: float
    probability: float
    searched_r1: int
    searched_r2: int
    num_candidates: int

    @property
    def rank(self) -> Rank:
        return (self.r1, self.r2)

    @property
    def repaired(self) -> bool:
        return (self.r1, self.r2) != (self.searched_r1, self.searched_r2)


@dataclass
class RankPlan:
    """Chosen ranks; ``total_cost`` includes the layers that are not decomposed (``fixed_cost``)."""

    metric: str
    budget: float
    budget_text: str
    layers: list[LayerPlan]
    fixed_cost: float
    original_total: float
    total_cost: float
    searched_total: float
    met: bool
    repaired: bool = False
    repair_rule: str = REPAIR_RULE
    repair_steps: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # layers kept undecomposed, and why

    @property
    def ranks(self) -> dict[str, Rank]:
        return {layer.name: layer.rank for layer in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "budget": self.budget,
            "budget_text": self.budget_text,
            "budget_met": self.met,
            "total_cost": self.total_cost,
            "original_total": self.original_total,
            "ratio": self.total_cost / self.original_total if self.original_total else None,
            "fixed_cost": self.fixed_cost,
            "searched_total": self.searched_total,
            "repaired": self.repaired,
            "repair_rule": self.repair_rule,
            "repair_steps": self.repair_steps,
            "note": self.note,
            "skipped": dict(self.skipped),
            "layers": {
                layer.name: {
                    "r1": layer.r1,
                    "r2": layer.r2,
                    "cost": layer.cost,
                    "original_cost": layer.original_cost,
                    "probability": layer.probability,
                    "searched_r1": layer.searched_r1,
                    "searched_r2": layer.searched_r2,
                    "repaired": layer.repaired,
                    "num_candidates": layer.num_candidates,
                }
                for layer in self.layers
            },
        }

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RankPlan:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            layers = [
                LayerPlan(name=name, r1=v["r1"], r2=v["r2"], cost=v["cost"], original_cost=v["original_cost"],
                          probability=v["probability"], searched_r1=v["searched_r1"], searched_r2=v["searched_r2"],
                          num_candidates=v["num_candidates"])
                for name, v in raw["layers"].items()
            ]
            return cls(metric=raw["metric"], budget=raw["budget"], budget_text=raw["budget_text"], layers=layers,
                       fixed_cost=raw["fixed_cost"], original_total=raw["original_total"], total_cost=raw["total_cost"],
                       searched_total=raw["searched_total"], met=raw["budget_met"], repaired=raw["repaired"],
                       repair_rule=raw.get("repair_rule", REPAIR_RULE), repair_steps=raw.get("repair_steps", []),
                       note=raw.get("note", ""), skipped=raw.get("skipped", {}))
        except FileNotFoundError:
            raise HalocError("ranks file not found", file=path, fix="run haloc-hw search first") from None
        except (KeyError, TypeError, ValueError) as err:
            raise HalocError(f"not a ranks.json written by haloc-hw search ({err})", file=path, fix="re-run the search") from None


def make_plan(
    probabilities: Mapping[str, Sequence[float]],
    candidates: Mapping[str, Sequence[Rank]],
    costs: Mapping[str, Sequence[float | Sequence[float]]],
    original_costs: Mapping[str, float | Sequence[float]],
    *,
    metric: str,
    budget: float,
    budget_text: str,
    fixed_cost: float | Sequence[float],
    repair: bool = True,
) -> RankPlan:
    """Argmax of ``p`` per layer, then (if ``repair``) the documented greedy repair to meet ``budget``.

    Costs are numbers, or per-component vectors (``[energy, cycles]`` for EDP, see
    :func:`haloc_hw.search.budget.components`); totals add components over layers and then
    combine them, so a model's EDP is its total energy times its total cycles.
    """
    vec = {n: [_as_vector(c) for c in cs] for n, cs in costs.items()}
    orig = {n: _as_vector(c) for n, c in original_costs.items()}
    fixed = _as_vector(fixed_cost)
    layer_cost = {n: [combine(c, metric) for c in cs] for n, cs in vec.items()}

    chosen: dict[str, int] = {}
    for name, probs in probabilities.items():
        probs = list(probs)
        chosen[name] = max(range(len(probs)), key=lambda j: (probs[j], -j))
    searched = dict(chosen)

    def total() -> float:
        return combine([f + sum(vec[n][j][i] for n, j in chosen.items()) for i, f in enumerate(fixed)], metric)

    searched_total = total()
    steps: list[dict[str, Any]] = []
    tol = budget * 1e-9
    while repair and total() > budget + tol:
        movable = [n for n, j in chosen.items() if any(c < layer_cost[n][j] for c in layer_cost[n])]
        if not movable:
            break
        name = max(movable, key=lambda n: (layer_cost[n][chosen[n]], n))
        current = layer_cost[name][chosen[name]]
        probs = list(probabilities[name])
        cheaper = [j for j, c in enumerate(layer_cost[name]) if c < current]
        new = max(cheaper, key=lambda j: (probs[j], layer_cost[name][j]))
        steps.append({"layer": name, "from": list(candidates[name][chosen[name]]), "to": list(candidates[name][new]),
                      "cost_from": current, "cost_to": layer_cost[name][new]})
        chosen[name] = new

    layers = [
        LayerPlan(name=name, r1=candidates[name][j][0], r2=candidates[name][j][1], cost=layer_cost[name][j],
                  original_cost=combine(orig[name], metric), probability=float(probabilities[name][j]),
                  searched_r1=candidates[name][searched[name]][0], searched_r2=candidates[name][searched[name]][1],
                  num_candidates=len(candidates[name]))
        for name, j in chosen.items()
    ]
    final = total()
    met = final <= budget + tol
    if steps:
        note = f"argmax ranks cost {searched_total:.6g} > budget {budget:.6g}; repaired in {len(steps)} step(s)"
    elif met:
        note = "argmax ranks meet the budget"
    else:
        note = f"argmax ranks cost {searched_total:.6g} > budget {budget:.6g} and repair was off"
    original_total = combine([f + sum(orig[n][i] for n in chosen) for i, f in enumerate(fixed)], metric)
    return RankPlan(metric=metric, budget=budget, budget_text=budget_text, layers=layers,
                    fixed_cost=combine(fixed, metric), original_total=original_total, total_cost=final,
                    searched_total=searched_total, met=met, repaired=bool(steps), repair_steps=steps, note=note)


def _as_vector(value: float | Sequence[float]) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]
