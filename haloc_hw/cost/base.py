"""What every cost backend returns, and the protocol they share.

A cost model sees only workloads (:class:`~haloc_hw.workload.ConvShape`) and its own
hardware description; it never sees the network or the search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from haloc_hw.workload import ConvShape

METRICS: tuple[str, ...] = ("cycles", "energy_pJ", "edp", "latency_s")


@dataclass(frozen=True)
class Cost:
    """Cost of one workload on one target.

    ``latency_s`` is measured (gpu backend) or ``cycles / clock`` where a clock is known;
    ``None`` where neither applies. ``breakdown`` holds backend-specific detail (per-level
    energy, the chosen mapping, timing percentiles) that tables keep but the search ignores.
    """

    cycles: float | None
    energy_pJ: float | None
    latency_s: float | None = None
    utilization: float | None = None
    breakdown: dict[str, Any] = field(default_factory=dict, compare=False)

    def metric(self, name: str) -> float:
        """Value of a metric by name (``edp`` = energy × cycles)."""
        from haloc_hw.errors import HalocError

        if name == "edp":
            if self.energy_pJ is None or self.cycles is None:
                raise HalocError("this backend gives no energy/cycles, so no EDP", key="metric", fix="use latency_s")
            return self.energy_pJ * self.cycles
        if name not in METRICS:
            raise HalocError(f"unknown metric '{name}'", key="metric", fix=f"use one of {', '.join(METRICS)}")
        value = getattr(self, name)
        if value is None:
            raise HalocError(f"this backend does not provide '{name}'", key="metric", fix="pick a metric the backend measures")
        return float(value)


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
