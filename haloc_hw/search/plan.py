"""The result of a search: chosen ranks per layer, their predicted cost, and the budget check.

When the argmax ranks exceed the budget, :func:`make_plan` repairs them greedily and records
every move in the plan (and thus in ``ranks.json``):

    while the total exceeds the budget: take the searched layer whose current candidate is
    the most expensive among layers that still have a cheaper candidate, and move it to the
    cheaper candidate with the highest probability p (ties: the more expensive of them,
    i.e. the smallest step down).

The budget was checked to be reachable before the search, so the loop always ends.

``decode="budget"`` reads p differently: the search holds the *expected* cost at the budget,
while the argmax of a spread-out p often lands far below it (budget unspent). This decode
picks the most probable ranks (largest sum of log p) whose total lies within ``band`` below
the budget, found exactly by dynamic programming over the cost in ``COST_BINS`` steps (costs
rounded up, so the plan never exceeds the budget); when no plan reaches the band it takes the
most expensive plan that fits. It needs an additive metric (not EDP, which falls back to the
argmax).

``decode="expected"`` follows p's expected cost layer by layer: each layer takes the
candidate whose cost is nearest ``s * E_p[cost_i]``, with the largest ``s <= 1`` (bisection)
for which the plan fits the budget. The hinge holds the sum of the E_p at the budget, so s is
usually close to 1 and the budget is spent where p put its weight. The budget decode, by
contrast, maximises the sum of log p: when every layer's p falls with the rank (a search that
has not converged), the cheapest way to fill its band is one expensive, improbable candidate
in a single layer (VGG-16 / Fashion-MNIST: rank 416 of 512 in the last conv, p = 0.003, every
other layer at its most probable rank 8-32). Also additive metrics only (EDP: the argmax).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from haloc_hw.errors import HalocError
from haloc_hw.fileio import write_json_atomic
from haloc_hw.search.budget import combine

Rank = tuple[int, int]

REPAIR_RULE = (
    "greedy: while over budget, move the searched layer with the most expensive current candidate "
    "(among layers with a cheaper one) to its most probable cheaper candidate"
)

#: How the plan reads p: the paper's per-layer argmax, the most probable plan near the budget, or
#: the plan that follows each layer's expected cost (module docstring).
DECODES: tuple[str, ...] = ("argmax", "budget", "expected")
COST_BINS = 4000
DEFAULT_BAND = 0.02
_SCALE_STEPS = 50  # bisection steps of the expected decode's scale (2^-50: exact in practice)


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
    decode: str = "argmax"

    @property
    def ranks(self) -> dict[str, Rank]:
        return {layer.name: layer.rank for layer in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "budget": self.budget,
            "budget_text": self.budget_text,
            "budget_met": self.met,
            "decode": self.decode,
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
                       note=raw.get("note", ""), skipped=raw.get("skipped", {}), decode=raw.get("decode", "argmax"))
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
    decode: str = "argmax",
    band: float = DEFAULT_BAND,
) -> RankPlan:
    """Argmax of ``p`` per layer, then (if ``repair``) the documented greedy repair to meet ``budget``.

    With ``decode="budget"`` the ranks are instead the most probable plan within ``band``
    below the budget, with ``decode="expected"`` the plan that follows each layer's expected
    cost (module docstring); ``searched_r1``/``searched_r2`` still record the argmax.

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
    if decode not in DECODES:
        raise HalocError(f"unknown decode '{decode}'", key="decode", fix=f"use one of {', '.join(DECODES)}")
    decoded = None
    if decode != "argmax" and len(fixed) == 1:
        if decode == "budget":
            decoded = _most_probable_near_budget(probabilities, layer_cost, budget - fixed[0], band)
        else:
            decoded = _follow_expected_cost(probabilities, layer_cost, budget - fixed[0])
        if decoded is not None:
            chosen = decoded
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
    if decode != "argmax" and decoded is None:
        note_prefix = ("EDP is not additive over layers: " if len(fixed) > 1 else "no plan fits the budget: ") + \
            f"decode={decode} fell back to the argmax; "
    else:
        note_prefix = ""
    if decoded is not None:
        what = (f"most probable ranks within {band:.0%} below the budget" if decode == "budget"
                else "ranks following each layer's expected cost under p")
        note = f"{what}: cost {final:.6g} (budget {budget:.6g}; the argmax cost {searched_total:.6g})"
    elif steps:
        note = f"argmax ranks cost {searched_total:.6g} > budget {budget:.6g}; repaired in {len(steps)} step(s)"
    elif met:
        note = "argmax ranks meet the budget"
    else:
        note = f"argmax ranks cost {searched_total:.6g} > budget {budget:.6g} and repair was off"
    note = note_prefix + note
    original_total = combine([f + sum(orig[n][i] for n in chosen) for i, f in enumerate(fixed)], metric)
    return RankPlan(metric=metric, budget=budget, budget_text=budget_text, layers=layers,
                    fixed_cost=combine(fixed, metric), original_total=original_total, total_cost=final,
                    searched_total=searched_total, met=met, repaired=bool(steps), repair_steps=steps, note=note,
                    decode=decode)


def _most_probable_near_budget(probabilities: Mapping[str, Sequence[float]], layer_cost: Mapping[str, list[float]],
                               room: float, band: float) -> dict[str, int] | None:
    """Per layer the candidate index of the plan with the largest sum of log p whose searched-layer
    cost is at most ``room`` and, if any plan gets there, at least ``(1 - band) * room``.

    Exact over costs rounded up to ``room / COST_BINS`` steps (so the true cost stays within
    ``room``). ``None`` when no plan fits.
    """
    if room <= 0:
        return None
    names = list(probabilities)
    width = room / COST_BINS
    # each candidate's cost in bins, rounded up (the -1e-9 keeps exact multiples from rounding up)
    layer_bins = {n: np.maximum(np.ceil(np.asarray(layer_cost[n], dtype=np.float64) / width - 1e-9), 0).astype(np.int64)
                  for n in names}
    worst = -np.inf
    best = np.full(COST_BINS + 1, worst)  # best[b]: the largest log-probability of a plan costing b bins
    best[0] = 0.0
    picks = []
    for name in names:
        logp = np.log(np.clip(np.asarray(probabilities[name], dtype=np.float64), 1e-300, None))
        new = np.full_like(best, worst)
        pick = np.full(COST_BINS + 1, -1, dtype=np.int64)
        for j, (b, lp) in enumerate(zip(layer_bins[name], logp)):
            if b > COST_BINS:
                continue
            shifted = np.full_like(best, worst)
            shifted[b:] = best[:COST_BINS + 1 - b] + lp
            better = shifted > new
            new[better], pick[better] = shifted[better], j
        best = new
        picks.append(pick)
    reachable = np.flatnonzero(np.isfinite(best))
    if reachable.size == 0:
        return None
    in_band = reachable[reachable >= int(np.floor((1 - band) * COST_BINS))]
    if in_band.size:
        end = int(in_band[np.argmax(best[in_band])])
    else:  # nothing reaches the band: the most expensive plan that fits
        end = int(reachable.max())
    chosen: dict[str, int] = {}
    for name, pick in zip(reversed(names), reversed(picks)):
        chosen[name] = int(pick[end])
        end -= int(layer_bins[name][chosen[name]])
    return {name: chosen[name] for name in names}  # model order, as the argmax plan lists them


def _follow_expected_cost(probabilities: Mapping[str, Sequence[float]], layer_cost: Mapping[str, list[float]],
                          room: float) -> dict[str, int] | None:
    """Per layer the candidate whose cost is nearest ``s * E_p[cost]`` (ties: the cheaper), with
    the largest ``s`` in [0, 1] for which the searched layers cost at most ``room``.

    The chosen costs never fall as s grows, so the total is monotone in s and bisection finds
    it. ``None`` when even the cheapest candidates do not fit.
    """
    names = list(probabilities)
    costs = {n: np.asarray(layer_cost[n], dtype=np.float64) for n in names}
    expected = {n: float(np.dot(np.asarray(probabilities[n], dtype=np.float64), costs[n])) for n in names}

    def plan(scale: float) -> dict[str, int]:
        # nearest by |cost - target|, ties to the cheaper candidate
        return {n: int(min(range(len(costs[n])), key=lambda j: (abs(costs[n][j] - scale * expected[n]), costs[n][j])))
                for n in names}

    def cost(chosen: dict[str, int]) -> float:
        return float(sum(costs[n][j] for n, j in chosen.items()))

    if cost(plan(1.0)) <= room:
        return plan(1.0)
    if cost(plan(0.0)) > room:
        return None
    low, high = 0.0, 1.0  # plan(low) fits, plan(high) does not
    for _ in range(_SCALE_STEPS):
        mid = (low + high) / 2
        low, high = (mid, high) if cost(plan(mid)) <= room else (low, mid)
    return plan(low)


def _as_vector(value: float | Sequence[float]) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]
