"""What every cost backend returns, and the protocol they share.

A cost model sees only workloads (:class:`~haloc_hw.workload.ConvShape`) and its own
hardware description; it never sees the network or the search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from haloc_hw.cost.metric import METRICS, get_metric
from haloc_hw.workload import ConvShape

__all__ = ["Cost", "CostModel", "make_breakdown"]


def make_breakdown(
    *,
    computes: int | None = None,
    levels: Mapping[str, float] | None = None,
    mapping: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """The one layout of :attr:`Cost.breakdown`.

    Keys, each present only where the backend knows it:

    * ``computes``: MAC operations of the workload;
    * ``levels``: energy in pJ per storage level by name, and of the arithmetic under ``"mac"``
      (the values add up to the cost's ``energy_pJ``);
    * ``mapping``: the chosen mapping as Timeloop mapping YAML data;
    * anything else is backend-specific and flat (the Timeloop backend's ``ert_source``,
      ``job_dir`` and tool seconds, the GPU backend's timing percentiles, batch and dtype).

    Tables store it as JSON beside each entry and nothing in the search reads it, so it is
    kept for people inspecting a table and for reports.
    """
    out: dict[str, Any] = {}
    if computes is not None:
        out["computes"] = int(computes)
    if levels is not None:
        out["levels"] = {name: float(value) for name, value in levels.items()}
    if mapping is not None:
        out["mapping"] = mapping
    out.update(extra)
    return out


@dataclass(frozen=True)
class Cost:
    """Cost of one workload on one target.

    ``latency_s`` is measured (gpu backend) or ``cycles / clock`` where a clock is known;
    ``None`` where neither applies. ``breakdown`` holds backend-specific detail in the layout of
    :func:`make_breakdown` (per-level energy, the chosen mapping, timing percentiles) that
    tables keep but the search ignores.
    """

    cycles: float | None
    energy_pJ: float | None
    latency_s: float | None = None
    utilization: float | None = None
    breakdown: dict[str, Any] = field(default_factory=dict, compare=False)

    def metric(self, name: str) -> float:
        """Value of a metric by name; a product metric (``edp`` = energy x cycles) from its components."""
        from haloc_hw.errors import HalocError

        metric = get_metric(name)
        values = [getattr(self, comp) for comp in metric.components]
        if any(v is None for v in values):
            if not metric.additive:
                given = "/".join(c.split("_")[0] for c in metric.components)
                raise HalocError(f"this backend gives no {given}, so no {metric.label}", key="metric", fix="use latency_s")
            raise HalocError(f"this backend does not provide '{name}'", key="metric", fix="pick a metric the backend measures")
        return float(metric.combine([float(v) for v in values]))


class CostModel(Protocol):
    """A backend: evaluates workloads on the hardware it was built for."""

    name: str

    def version(self) -> str:
        """Backend version string; part of every cache key."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """Canonical description of the hardware and settings (hashed into cache keys)."""
        ...

    def evaluate(self, workloads: Sequence[ConvShape]) -> list[Cost]:
        ...
