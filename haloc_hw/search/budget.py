"""Hardware budgets: parsing ``--budget-*`` values and checking them against a cost table.

The search sees costs only through :class:`CostLookup` (the query side of
:class:`haloc_hw.cost.table.CostTable`), so it can be tested with a small in-memory table
and run unchanged on analytical, Timeloop or measured GPU tables.

A budget is written either as a *fraction* of the original model's table cost
(``0.3``, ``30%``) or as an *absolute* value with units (``150uJ``, ``2e6cycles``,
``1.5ms``). A unit-less number ``<= 1`` is a fraction; a unit-less number ``> 1`` is an
absolute value in the metric's base unit (pJ, cycles, seconds, pJ*cycles).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from haloc_hw.decompose.ranks import rank_candidates
from haloc_hw.errors import HalocError
from haloc_hw.workload import tucker2_triple

Rank = tuple[int, int]

#: ``--budget-X`` flag suffix -> table metric.
BUDGET_FLAGS: dict[str, str] = {
    "energy": "energy_pJ",
    "cycles": "cycles",
    "latency": "latency_s",
    "edp": "edp",
}

# Unit (lower-case, spaces removed) -> factor to the metric's base unit.
_UNITS: dict[str, dict[str, float]] = {
    "energy_pJ": {"pj": 1.0, "nj": 1e3, "uj": 1e6, "µj": 1e6, "mj": 1e9, "j": 1e12},
    "cycles": {"cycles": 1.0, "cycle": 1.0, "cyc": 1.0},
    "latency_s": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
    "edp": {"pj*cycles": 1.0, "pjcycles": 1.0, "pj*cycle": 1.0, "pj.cycles": 1.0},
}
_BASE_UNIT = {"energy_pJ": "pJ", "cycles": "cycles", "latency_s": "s", "edp": "pJ*cycles"}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$")


class CostLookup(Protocol):
    """What the search needs from a cost table (``CostTable`` satisfies it)."""

    def layers(self) -> Sequence[str]:
        """Every layer the table knows, decomposable or not."""
        ...

    def candidates(self, layer: str) -> Sequence[Rank]:
        """The (r1, r2) candidates the table has costs for."""
        ...

    def cost(self, layer: str, r1: int, r2: int, metric: str) -> float:
        """Cost of the Tucker-2 triple of ``layer`` at ranks (r1, r2)."""
        ...

    def original_cost(self, layer: str, metric: str) -> float:
        """Cost of the undecomposed layer."""
        ...


class MacsCosts:
    """A :class:`CostLookup` that prices every metric by MACs, from ``extract_shapes`` layers.

    No hardware in it: enough to drive the search where only its mechanics matter (timing
    benchmarks, tests), with the rank candidates ``haloc-hw search`` would build.
    """

    def __init__(self, layers: Sequence[Any]) -> None:
        self.info = {layer.name: layer for layer in layers}

    def layers(self) -> list[str]:
        return list(self.info)

    def candidates(self, layer: str) -> list[Rank]:
        info = self.info[layer]
        return rank_candidates(info.shape) if info.decomposable else []

    def cost(self, layer: str, r1: int, r2: int, metric: str) -> float:
        return float(sum(s.macs for s in tucker2_triple(self.info[layer].shape, r1, r2)))

    def original_cost(self, layer: str, metric: str) -> float:
        return float(self.info[layer].shape.macs)


@dataclass(frozen=True)
class Budget:
    """A parsed budget: ``value`` is a fraction if ``relative``, else absolute in base units."""

    metric: str
    value: float
    relative: bool
    text: str = ""

    def describe(self) -> str:
        if self.relative:
            return f"{self.value:g} of the original {self.metric}"
        return format_cost(self.value, self.metric)


@dataclass(frozen=True)
class CostRange:
    """Totals of a model over a table: original, cheapest and dearest reachable by the search."""

    original: float
    minimum: float
    maximum: float
    fixed: float
    fixed_components: tuple[float, ...] = ()


def format_cost(value: float, metric: str) -> str:
    """Human-readable value with the metric's base unit."""
    return f"{value:.4g} {_BASE_UNIT.get(metric, '')}".rstrip()


def budget_key(metric: str) -> str:
    """The option naming a budget of ``metric`` in error messages (``energy_pJ`` -> ``budget-energy``)."""
    return "budget-" + next((k for k, v in BUDGET_FLAGS.items() if v == metric), metric)


def metric_for_flag(flag: str) -> str:
    """``energy`` -> ``energy_pJ`` etc.; unknown names raise :class:`HalocError`."""
    try:
        return BUDGET_FLAGS[flag]
    except KeyError:
        raise HalocError(
            f"unknown budget kind '{flag}'", key="budget", fix=f"use one of --budget-{', --budget-'.join(BUDGET_FLAGS)}"
        ) from None


def parse_budget(text: str | float, metric: str) -> Budget:
    """Parse a budget value for ``metric``.

    ``0.3`` / ``30%`` are fractions of the original model's cost; ``150uJ``, ``2mJ``,
    ``3e6pJ`` (energy), ``2e6cycles`` / ``2e6`` (cycles), ``1.5ms`` / ``200us`` (latency),
    ``4e12pJ*cycles`` (EDP) are absolute.
    """
    if metric not in _UNITS:
        raise HalocError(f"unknown metric '{metric}'", key="metric", fix=f"use one of {', '.join(_UNITS)}")
    key = budget_key(metric)
    raw = str(text)
    match = _NUMBER.match(raw)
    if not match:
        raise HalocError(
            f"cannot read budget '{raw}'", key=key, fix=f"write a fraction like 0.3 or 30%, or a value like 150{_BASE_UNIT[metric]}"
        )
    number = float(match.group(1))
    unit = match.group(2).replace(" ", "").lower()
    if not 0 < number < math.inf:
        raise HalocError(f"budget '{raw}' must be positive and finite", key=key, fix="give a positive fraction or value")
    if unit == "%":
        return Budget(metric, number / 100.0, True, raw)
    if unit == "":
        return Budget(metric, number, number <= 1.0, raw)
    factors = _UNITS[metric]
    if unit not in factors:
        known = ", ".join(sorted({u for u in factors if u.isascii()}))
        raise HalocError(f"unknown unit '{match.group(2)}' in budget '{raw}'", key=key, fix=f"use one of: {known}, or %")
    return Budget(metric, number * factors[unit], False, raw)


def check_table(costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], metric: str, source: str | None = None) -> None:
    """Raise one :class:`HalocError` naming every searched layer or candidate the table lacks."""
    known = set(costs.layers())
    missing_layers = [name for name in candidates if name not in known]
    missing_cands: list[str] = []
    for name, cands in candidates.items():
        if name in known:
            have = {tuple(int(v) for v in c) for c in costs.candidates(name)}
            missing_cands += [f"{name}@{r1}x{r2}" for r1, r2 in cands if (int(r1), int(r2)) not in have]
    if missing_layers or missing_cands:
        parts = []
        if missing_layers:
            parts.append(f"layers {_shorten(missing_layers)}")
        if missing_cands:
            parts.append(f"candidates {_shorten(missing_cands)}")
        raise HalocError(
            f"cost table lacks {' and '.join(parts)}",
            file=source,
            key="layers",
            fix="rebuild the table for this model (haloc-hw tables, or search without --table)",
        )
    for name in candidates:
        try:
            costs.original_cost(name, metric)
        except (KeyError, ValueError) as err:
            raise HalocError(f"cost table has no original '{metric}' cost for layer {name}: {err}", file=source, key=name,
                             fix="rebuild the table") from None


def components(metric: str) -> tuple[str, ...]:
    """Additive metrics a model total is built from: EDP = (total energy) x (total cycles), not a sum of EDPs."""
    return ("energy_pJ", "cycles") if metric == "edp" else (metric,)


def combine(totals: Sequence[float], metric: str) -> float:
    """Model total of ``metric`` from the per-component totals of :func:`components`."""
    return float(math.prod(totals)) if metric == "edp" else float(totals[0])


def candidate_vectors(costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], metric: str) -> dict[str, list[list[float]]]:
    """Per layer, per candidate, the component costs (``[[energy, cycles], ...]`` for EDP)."""
    comps = components(metric)
    return {n: [[float(costs.cost(n, r1, r2, c)) for c in comps] for r1, r2 in cands] for n, cands in candidates.items()}


def cost_range(costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], metric: str) -> CostRange:
    """Original, cheapest and dearest whole-model cost; layers not searched count at their original cost.

    For EDP the extremes are taken over the two rank choices that minimise (maximise) energy
    and cycles layer by layer; they are exact when one candidate is cheapest in both, as
    with every table where cost falls with rank.
    """
    comps = components(metric)
    fixed = [sum(costs.original_cost(n, c) for n in costs.layers() if n not in candidates) for c in comps]
    original = combine([f + sum(costs.original_cost(n, c) for n in candidates) for f, c in zip(fixed, comps)], metric)
    vectors = candidate_vectors(costs, candidates, metric)

    def total(pick: Callable[[list[list[float]]], list[float]]) -> float:
        chosen = [pick(v) for v in vectors.values()]
        return combine([f + sum(c[i] for c in chosen) for i, f in enumerate(fixed)], metric)

    lows = [total(lambda v, i=i: min(v, key=lambda c: c[i])) for i in range(len(comps))]
    highs = [total(lambda v, i=i: max(v, key=lambda c: c[i])) for i in range(len(comps))]
    return CostRange(original=original, minimum=min(lows), maximum=max(highs), fixed=combine(fixed, metric),
                     fixed_components=tuple(fixed))


def resolve_budget(
    budget: Budget, costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], source: str | None = None
) -> tuple[float, CostRange]:
    """Absolute budget in base units, checked to be reachable; returns it with the model's cost range."""
    rng = cost_range(costs, candidates, budget.metric)
    absolute = budget.value * rng.original if budget.relative else budget.value
    if absolute < rng.minimum * (1 - 1e-9):
        raise HalocError(
            f"budget {budget.text or budget.describe()} ({format_cost(absolute, budget.metric)}) is below the cheapest "
            f"reachable ranks: {rng.minimum / rng.original:.4g} of the original = {format_cost(rng.minimum, budget.metric)}",
            file=source,
            key=budget_key(budget.metric),
            fix=f"raise the budget to at least {rng.minimum / rng.original:.4g} or add smaller rank candidates to the table",
        )
    return absolute, rng


def _shorten(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
