"""Reports of one analytical evaluation: a Timeloop-style ``stats.txt`` and a JSON document.

The text follows the layout of ``timeloop-model`` 3.0.x (``Level N`` / ``=== name ===`` /
SPECS / STATS / per data space counts / ``Summary Stats`` with ``fJ/Compute``), so people
used to Timeloop can read it and the project's stats parser can read it back. Energies are
printed with more decimals than Timeloop's two so that totals survive the round trip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haloc_hw.cost.analytical.model import Evaluation
from haloc_hw.fileio import write_json_atomic, write_text_atomic
from haloc_hw.spec.model import Architecture, EnergyTable


def stats_json(ev: Evaluation) -> dict[str, Any]:
    """Every statistic of the evaluation as plain JSON data (levels outermost first)."""
    return {
        "cycles": ev.cycles,
        "energy_pJ": ev.energy_pJ,
        "leak_pJ": ev.leak_pJ,
        "computes": ev.computes,
        "utilization": ev.utilization,
        "mac": {"cycles": ev.mac_cycles, "utilized_instances": ev.mac_instances, "energy_pJ": ev.mac_energy_pJ},
        "levels": [
            {
                "name": lvl.name,
                "utilized_instances": lvl.utilized_instances,
                "cycles": lvl.cycles,
                "throttling": lvl.throttling,
                "energy_pJ": lvl.energy_pJ,
                "leak_pJ": lvl.leak_pJ,
                "dataspaces": {
                    ds: {
                        "partition_size": st.partition_size,
                        "utilized_capacity": st.utilized_capacity,
                        "utilized_instances": st.utilized_instances,
                        "utilized_clusters": st.utilized_clusters,
                        "reads": st.reads,
                        "updates": st.updates,
                        "fills": st.fills,
                        "temporal_reductions": st.temporal_reductions,
                        "address_generations": st.address_generations,
                        "energy_pJ": st.energy_pJ,
                    }
                    for ds, st in lvl.dataspaces.items()
                },
            }
            for lvl in ev.levels
        ],
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def stats_text(ev: Evaluation, title: str = "", arch: Architecture | None = None,
               energy: EnergyTable | None = None) -> str:
    """A ``timeloop-model``-style report. ``arch``/``energy`` add the SPECS of each level."""
    out: list[str] = []
    if title:
        out += [title, "=" * len(title), ""]
    out += ["Buffer and Arithmetic Levels", "----------------------------"]
    out += ["Level 0", "-------", f"=== {arch.arithmetic.name if arch else 'mac'} ===", ""]
    if arch is not None:
        out += ["    SPECS", "    -----", f"    Instances             : {arch.arithmetic.instances} "
                f"({arch.arithmetic.mesh_x}*{arch.arithmetic.mesh_y})"]
        if energy is not None:
            out.append(f"    Compute energy        : {energy.compute:.2f} pJ")
        out.append("")
    out += ["    STATS", "    -----",
            f"    Utilized instances      : {ev.mac_instances}",
            f"    Computes (total)        : {ev.computes}",
            f"    Cycles                  : {ev.mac_cycles}",
            f"    Energy (total)          : {ev.mac_energy_pJ:.6f} pJ", ""]
    inner_first = list(reversed(ev.levels))
    for k, lvl in enumerate(inner_first, start=1):
        out += [f"Level {k}", "-------", f"=== {lvl.name} ===", ""]
        if arch is not None:
            spec = arch.level(lvl.name)
            ae = energy.for_level(lvl.name) if energy is not None else None
            out += ["    SPECS", "    -----",
                    f"        Size                        : {'-' if spec.size_words is None else spec.size_words}",
                    f"        Word bits                   : {spec.word_bits}",
                    f"        Block size                  : {spec.block_size}",
                    f"        Cluster size                : {spec.cluster_size}",
                    f"        Instances                   : {spec.instances} ({spec.mesh_x}*{spec.mesh_y})",
                    f"        Shared bandwidth            : {_fmt(spec.shared_bandwidth)}",
                    f"        Read bandwidth              : {_fmt(spec.read_bandwidth)}",
                    f"        Write bandwidth             : {_fmt(spec.write_bandwidth)}",
                    f"        Effective size              : {'-' if spec.effective_size is None else spec.effective_size}"]
            if ae is not None:
                out.append(f"        Vector access energy        : {ae.vector_access:.2f} pJ")
                out.append(f"        Per-instance-cycle leakage  : {ae.leak:.6f} pJ")
            out.append("")
        out += ["    STATS", "    -----",
                f"    Cycles               : {lvl.cycles}",
                f"    Bandwidth throttling : {lvl.throttling:.2f}",
                f"    Leakage energy (total) : {lvl.leak_pJ:.6f} pJ"]
        for ds, st in lvl.dataspaces.items():
            accesses = st.reads + st.fills + st.updates
            per_inst = st.energy_pJ / st.utilized_instances if st.utilized_instances else 0.0
            out += [f"    {ds}:",
                    f"        Partition size                           : {st.partition_size}",
                    f"        Utilized capacity                        : {st.utilized_capacity}",
                    f"        Utilized instances (max)                 : {st.utilized_instances}",
                    f"        Utilized clusters (max)                  : {st.utilized_clusters}",
                    f"        Scalar reads (per-instance)              : {st.reads}",
                    f"        Scalar updates (per-instance)            : {st.updates}",
                    f"        Scalar fills (per-instance)              : {st.fills}",
                    f"        Temporal reductions (per-instance)       : {st.temporal_reductions}",
                    f"        Address generations (per-cluster)        : {st.address_generations}",
                    f"        Energy (per-scalar-access)               : {per_inst / accesses if accesses else 0.0:.2f} pJ",
                    f"        Energy (per-instance)                    : {per_inst:.6f} pJ",
                    f"        Energy (total)                           : {st.energy_pJ:.6f} pJ"]
        out.append("")
    computes = max(ev.computes, 1)
    width = max([len(lvl.name) for lvl in ev.levels] + [5, len(arch.arithmetic.name) if arch else 3])
    mac_name = arch.arithmetic.name if arch else "mac"
    out += ["Summary Stats", "-------------",
            f"Utilization: {ev.utilization:.2f}",
            f"Cycles: {ev.cycles}",
            f"Energy: {ev.energy_pJ / 1e6:.2f} uJ",
            f"EDP(J*cycle): {ev.energy_pJ * 1e-12 * ev.cycles:.2e}",
            "",
            f"Computes = {ev.computes}",
            "fJ/Compute",
            f"    {mac_name:<{width}} = {ev.mac_energy_pJ / computes * 1000:.6f}"]
    for lvl in inner_first:
        out.append(f"    {lvl.name:<{width}} = {lvl.energy_pJ / computes * 1000:.6f}")
    out.append(f"    {'Total':<{width}} = {ev.energy_pJ / computes * 1000:.6f}")
    out.append("")
    return "\n".join(out)


def write_stats(ev: Evaluation, prefix: str | Path, *, title: str = "", arch: Architecture | None = None,
                energy: EnergyTable | None = None) -> tuple[Path, Path]:
    """Write ``<prefix>.stats.txt`` and ``<prefix>.stats.json`` atomically; returns both paths."""
    prefix = Path(prefix)
    txt = prefix.with_name(prefix.name + ".stats.txt")
    js = prefix.with_name(prefix.name + ".stats.json")
    write_text_atomic(txt, stats_text(ev, title, arch, energy))
    write_json_atomic(js, stats_json(ev))
    return txt, js
