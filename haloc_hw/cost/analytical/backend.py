"""The ``analytical`` cost backend: the embedded mapper + model behind the CostModel protocol.

Each workload is mapped by :class:`~haloc_hw.cost.analytical.mapper.Mapper` under the
given constraints and metric; the winner's exact evaluation becomes a
:class:`~haloc_hw.cost.base.Cost`. Nothing is cached here: the cost-table layer caches by
``(name, version(), fingerprint(), workload)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.cost.analytical.mapper import MAPPER_VERSION, Mapper, MapperSettings, parse_metric
from haloc_hw.cost.analytical.model import MODEL_VERSION
from haloc_hw.cost.base import Cost, make_breakdown
from haloc_hw.errors import HalocError
from haloc_hw.spec.mapping import Constraints
from haloc_hw.spec.model import Architecture, EnergyTable
from haloc_hw.workload import ConvShape


# Bump when the backend's own behaviour changes (the model's version is appended).
BACKEND_VERSION = "1"


def _level_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict without fields excluded from comparison (free-form attributes, sources)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.compare}


def _directive_dict(d: Any) -> dict[str, Any]:
    return {
        "target": d.target,
        "type": d.type,
        "factors": dict(sorted(d.factors.items())),
        "permutation": d.permutation,
        "permutation_suffix": d.permutation_suffix,
        "split": d.split,
        "keep": sorted(d.keep) if d.keep is not None else None,
        "bypass": sorted(d.bypass) if d.bypass is not None else None,
        "max_factors": dict(sorted(d.max_factors.items())),
        "min_factors": dict(sorted(d.min_factors.items())),
    }


class AnalyticalCostModel:
    """Embedded Timeloop-compatible cost model (see the module docstring)."""

    name = "analytical"

    def __init__(
        self,
        arch: Architecture,
        energy: EnergyTable,
        constraints: Constraints,
        metric: str = "delay,energy",
        clock_hz: float | None = None,
        settings: MapperSettings | None = None,
    ) -> None:
        if clock_hz is not None and not clock_hz > 0:
            raise HalocError(f"clock must be positive, got {clock_hz}", key="clock_hz", fix="give the clock in Hz, e.g. 200e6")
        self.arch = arch
        self.energy = energy
        self.constraints = constraints
        self.metric = parse_metric(metric)
        self.clock_hz = clock_hz
        self.settings = dataclasses.replace(settings or MapperSettings(), metric=self.metric)
        self._mapper = Mapper(arch, constraints, energy, self.settings)

    @classmethod
    def from_files(
        cls,
        arch_path: str | Path,
        constraints_path: str | Path | Sequence[str | Path] | None = None,
        ert_path: str | Path | None = None,
        *,
        metric: str = "delay,energy",
        clock_hz: float | None = None,
        settings: MapperSettings | None = None,
    ) -> "AnalyticalCostModel":
        """Build from files; the ERT and constraints default to the ones shipped with the arch."""
        from haloc_hw.spec.constraints import load_constraints
        from haloc_hw.spec.energy import load_energy_table
        from haloc_hw.spec.loader import load_arch
        from haloc_hw.spec.shipped import default_constraints_paths, require_ert_path, resolve_spec_path

        arch_path = resolve_spec_path(arch_path, key="architecture")
        arch = load_arch(arch_path)
        ert = require_ert_path(arch_path, ert_path)
        if constraints_path is None:
            constraints_path = default_constraints_paths(arch_path)
        constraints = load_constraints(constraints_path, arch)
        return cls(arch, load_energy_table(ert, arch), constraints, metric=metric, clock_hz=clock_hz, settings=settings)

    def version(self) -> str:
        return f"{BACKEND_VERSION}+mapper{MAPPER_VERSION}+model{MODEL_VERSION}"

    def fingerprint(self) -> dict[str, Any]:
        s = self.settings
        return {
            "arch": {
                "levels": [_level_dict(lv) for lv in self.arch.levels],
                "arithmetic": _level_dict(self.arch.arithmetic),
            },
            "energy": {
                "compute": self.energy.compute,
                "storage": {k: _energy_dict(v) for k, v in sorted(self.energy.storage.items())},
            },
            "constraints": sorted((_directive_dict(d) for d in self.constraints.directives), key=lambda d: (d["target"], d["type"])),
            "metric": ",".join(self.metric),
            # every knob that can change the mapping found (the metric is above)
            "mapper": {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name != "metric"},
            "clock_hz": self.clock_hz,
        }

    def evaluate(self, workloads: Sequence[ConvShape]) -> list[Cost]:
        from haloc_hw.spec.constraints import mapping_to_yaml

        out: list[Cost] = []
        for shape in workloads:
            res = self._mapper.search(shape, self.metric)
            ev = res.evaluation
            cycles = float(ev.cycles)
            breakdown = make_breakdown(
                computes=ev.computes,
                levels=ev.energy_by_level(),
                mapping=mapping_to_yaml(res.mapping),
                mapper={"evaluated": res.evaluated, "valid": res.valid, "seconds": round(res.seconds, 4)},
            )
            out.append(Cost(
                cycles=cycles,
                energy_pJ=float(ev.energy_pJ),
                latency_s=cycles / self.clock_hz if self.clock_hz else None,
                utilization=float(ev.utilization),
                breakdown=breakdown,
            ))
        return out


def _energy_dict(ae: Any) -> dict[str, Any]:
    """Action energies for the fingerprint; a zero ``leak`` is left out so tables built
    before leakage was modelled keep their fingerprint."""
    d = dataclasses.asdict(ae)
    if not d.get("leak"):
        d.pop("leak", None)
    return d
