"""The cost metrics: one definition each, read by the cost table, the budgets and the search.

A metric is what a cost table can total over a model and a budget can bound: cycles, energy,
latency, or the energy-delay product. Each is built from *components*, additive fields of
:class:`~haloc_hw.cost.base.Cost` that are summed over layers first and then combined. For the
plain metrics the component is the metric itself; EDP's are energy and cycles, and a model's EDP
is (total energy) x (total cycles), never a sum of per-layer EDPs. Keeping that rule in one
place is the point of this module: the table, the budget check, the plan decode and the
differentiable expected cost of the search all combine through :meth:`Metric.combine`.

Nothing here imports torch or numpy, so the command line can list metric names cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from haloc_hw.errors import HalocError


@dataclass(frozen=True)
class Metric:
    """One cost metric.

    ``name`` is the table's key (a :class:`~haloc_hw.cost.base.Cost` field for additive
    metrics), ``flag`` the suffix of its ``--budget-FLAG`` option, ``unit`` its base unit, and
    ``units`` the factor from each accepted unit (lower case, no spaces) to the base unit.
    ``components`` are the additive fields it is built from; :meth:`combine` multiplies their
    totals (a single component is returned as it is).
    """

    name: str
    flag: str
    unit: str
    units: Mapping[str, float]
    components: tuple[str, ...]
    label: str = ""

    @property
    def additive(self) -> bool:
        """True when a model total is the sum of layer totals (one component)."""
        return len(self.components) == 1

    def combine(self, totals: Sequence[Any]) -> Any:
        """The metric from its components' model totals (floats or torch scalars alike)."""
        if len(totals) != len(self.components):
            raise ValueError(f"{self.name} takes {len(self.components)} component total(s), got {len(totals)}")
        value = totals[0]
        for other in totals[1:]:
            value = value * other
        return value

    def format(self, value: float) -> str:
        """Human-readable value with the base unit."""
        return f"{value:.4g} {self.unit}".rstrip()


CYCLES = Metric("cycles", "cycles", "cycles", {"cycles": 1.0, "cycle": 1.0, "cyc": 1.0}, ("cycles",), "cycles")
ENERGY = Metric(
    "energy_pJ", "energy", "pJ", {"pj": 1.0, "nj": 1e3, "uj": 1e6, "µj": 1e6, "mj": 1e9, "j": 1e12}, ("energy_pJ",),
    "energy",
)
LATENCY = Metric(
    "latency_s", "latency", "s", {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}, ("latency_s",), "latency",
)
EDP = Metric(
    "edp", "edp", "pJ*cycles", {"pj*cycles": 1.0, "pjcycles": 1.0, "pj*cycle": 1.0, "pj.cycles": 1.0},
    ("energy_pJ", "cycles"), "EDP",
)

#: Every metric by table name, in the order tables and the command line list them.
REGISTRY: dict[str, Metric] = {m.name: m for m in (CYCLES, ENERGY, EDP, LATENCY)}
#: Table metric names.
METRICS: tuple[str, ...] = tuple(REGISTRY)
#: ``--budget-FLAG`` suffix -> table metric, in the order the budget options are offered.
BUDGET_FLAGS: dict[str, str] = {m.flag: m.name for m in (ENERGY, CYCLES, LATENCY, EDP)}


def get_metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name raises :class:`HalocError` listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise HalocError(f"unknown metric '{name}'", key="metric", fix=f"use one of {', '.join(METRICS)}") from None


def metric_for_flag(flag: str) -> str:
    """``energy`` -> ``energy_pJ`` etc.; unknown names raise :class:`HalocError`."""
    try:
        return BUDGET_FLAGS[flag]
    except KeyError:
        raise HalocError(
            f"unknown budget kind '{flag}'", key="budget", fix=f"use one of --budget-{', --budget-'.join(BUDGET_FLAGS)}"
        ) from None


def budget_key(metric: str) -> str:
    """The option naming a budget of ``metric`` in error messages (``energy_pJ`` -> ``budget-energy``)."""
    found = REGISTRY.get(metric)
    return "budget-" + (found.flag if found else metric)
