"""The estimator's result: per-component energies and areas, and their Accelergy-format documents.

:class:`EnergyEstimate` holds one :class:`Entry` per component. ``ert_doc()`` / ``art_doc()`` are
Accelergy v0.4 ERT / ART documents (``name: <path>[1..<instances>]``, ``leak`` included, energies
in pJ, areas in um^2), which Timeloop and :func:`haloc_hw.spec.energy.load_energy_table` read: a
table matches a level by the last dotted part of its name with the range removed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ERT_VERSION = "0.4"
ESTIMATED = "estimated"
USER = "user"
_DIGITS = 6


def _round(x: float) -> float:
    return float(f"{x:.{_DIGITS}g}")


@dataclass(frozen=True)
class Entry:
    """One component: its actions (pJ each; ``leak`` per cycle), area per instance (um^2)."""

    path: str
    name: str
    cls: str
    instances: int
    actions: dict[str, float]
    area: float | None
    energy_origin: str  # "estimated" | "user"
    area_origin: str  # "estimated" | "user" | "none"
    source: str
    primitives: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # published sources of the figures (full text)

    @property
    def table_name(self) -> str:
        return f"{self.path}[1..{self.instances}]"


@dataclass(frozen=True)
class EnergyEstimate:
    entries: tuple[Entry, ...]
    extra_ert_tables: tuple[dict[str, Any], ...] = field(default=())  # user tables matching no component
    extra_art_tables: tuple[dict[str, Any], ...] = field(default=())

    @property
    def total_area_um2(self) -> float:
        return sum((e.area or 0.0) * e.instances for e in self.entries)

    def entry(self, name: str) -> Entry:
        for e in self.entries:
            if name in (e.name, e.path):
                return e
        raise KeyError(name)

    def ert_doc(self) -> dict[str, Any]:
        tables = [
            {
                "name": e.table_name,
                "actions": [{"name": a, "arguments": {}, "energy": _round(v)} for a, v in e.actions.items()],
            }
            for e in self.entries
        ]
        return {"ERT": {"version": ERT_VERSION, "tables": tables + [dict(t) for t in self.extra_ert_tables]}}

    def art_doc(self) -> dict[str, Any]:
        tables = [{"name": e.table_name, "area": _round(e.area)} for e in self.entries if e.area is not None]
        return {"ART": {"version": ERT_VERSION, "tables": tables + [dict(t) for t in self.extra_art_tables]}}

    def rows(self) -> list[tuple[str, str, float | None, float | None, str, str]]:
        """(component, action, pJ, um^2 per instance, origin, source) -- one per action; area on the first."""
        out = []
        for e in self.entries:
            first = True
            for a, v in e.actions.items():
                out.append((e.path, a, v, e.area if first else None, e.energy_origin if not first or e.area_origin == e.energy_origin else f"{e.energy_origin}/area {e.area_origin}", e.source))
                first = False
        return out

    def table_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["component", "action", "energy_pJ", "area_um2", "origin", "source"])
        for comp, action, energy, area, origin, source in self.rows():
            w.writerow([comp, action, "" if energy is None else f"{energy:.6g}", "" if area is None else f"{area:.6g}", origin, source])
        return buf.getvalue()

    def table_markdown(self) -> str:
        lines = [
            "| component | action | energy (pJ) | area (um^2) | origin | source |",
            "|---|---|---:|---:|---|---|",
        ]
        for comp, action, energy, area, origin, source in self.rows():
            e = "" if energy is None else f"{energy:.6g}"
            a = "" if area is None else f"{area:.6g}"
            lines.append(f"| {comp} | {action} | {e} | {a} | {origin} | {source.replace('|', '/')} |")
        lines.append("")
        lines.append(f"Total area: {self.total_area_um2:.6g} um^2 (all instances). Leak is energy per cycle.")
        cited = []
        for e in self.entries:
            cited.extend(s for s in e.sources if s not in cited)
        if cited:
            lines.append("")
            lines.append("Sources of the estimated figures:")
            lines.append("")
            lines.extend(f"- {s}" for s in cited)
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        est = sum(1 for e in self.entries if e.energy_origin == ESTIMATED)
        user = len(self.entries) - est
        return f"{len(self.entries)} components ({est} estimated, {user} from the user's ERT), total area {self.total_area_um2:.6g} um^2"

    def energy_table(self, arch: Any) -> Any:
        """The :class:`~haloc_hw.spec.model.EnergyTable` the cost models read, exactly as
        :func:`haloc_hw.spec.energy.load_energy_table` reads this ERT (same action mapping rules)."""
        from haloc_hw.spec.energy import load_energy_table

        with tempfile.TemporaryDirectory(prefix="haloc-ert-") as tmp:
            path = Path(tmp) / "ERT.yaml"
            path.write_text(yaml.safe_dump(self.ert_doc(), sort_keys=False))
            table = load_energy_table(path, arch)
        return dataclasses.replace(table, source="haloc-hw energy estimate")
