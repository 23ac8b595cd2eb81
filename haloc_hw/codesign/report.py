"""The co-design HTML report: one self-contained page (plots embedded as PNG data).

* the Pareto front: energy against the accuracy proxy, colour = area, front points ringed,
  HALOC-measured top-1 written beside the points that have it;
* per-variable sensitivity: for each variable, the median (over the other variables and the
  allocators) of energy, cycles and area at each of its values, relative to the overall
  median: how much that knob alone moves each objective;
* the chosen designs' per-layer breakdown: for the HALOC runs (else the three front rows of
  least EDP), each layer's ranks and its energy and cycles before and after compression.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.fileio import write_text_atomic
from haloc_hw.report.page import Block, figure_data_uri, render_html
from haloc_hw.report.plots import new_figure

DPI = 110


def front_plot(rows: Sequence[dict[str, Any]]) -> str:
    """Energy against the accuracy proxy, as an embedded PNG."""
    fig = new_figure(6.4, 4.4)
    ax = fig.subplots()
    xs = [r["energy_pJ"] / 1e6 for r in rows]
    ys = [100 * (1 - r["proxy_error"]) for r in rows]
    sc = ax.scatter(xs, ys, c=[r["area_mm2"] for r in rows], cmap="viridis", s=28, zorder=3)
    fig.colorbar(sc, ax=ax, label="area [mm²]")
    front = [r for r in rows if r["pareto"]]
    ax.scatter([r["energy_pJ"] / 1e6 for r in front], [100 * (1 - r["proxy_error"]) for r in front], s=120,
               facecolors="none", edgecolors="red", linewidths=1.1, zorder=4, label="Pareto front (4 objectives)")
    for r in rows:
        if r.get("top1_haloc") is not None:
            ax.annotate(f"HALOC {r['top1_haloc']:.1f}%", (r["energy_pJ"] / 1e6, 100 * (1 - r["proxy_error"])),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("energy per inference [µJ]")
    ax.set_ylabel("accuracy proxy: 100·(1 − weight error) [%]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_data_uri(fig, dpi=DPI)


def sensitivity(rows: Sequence[dict[str, Any]], variables: dict[str, Sequence[Any]]) -> dict[str, dict[str, list[float | None]]]:
    """variable -> objective -> median over rows at each value, relative to the overall median."""
    out: dict[str, dict[str, list[float | None]]] = {}
    for obj in ("energy_pJ", "cycles", "area_mm2"):
        overall = statistics.median(r[obj] for r in rows) if rows else 0.0
        for var, values in variables.items():
            meds: list[float | None] = []
            for v in values:
                sel = [r[obj] for r in rows if r["values"].get(var) == v]
                meds.append(statistics.median(sel) / overall if sel and overall else None)
            out.setdefault(var, {})[obj] = meds
    return out


def sensitivity_plot(sens: dict[str, dict[str, list[float | None]]], variables: dict[str, Sequence[Any]]) -> str:
    """One panel per variable with more than one value: each objective's relative median, as an embedded PNG."""
    names = [v for v in variables if len(variables[v]) > 1]
    fig = new_figure(3.0 * max(1, len(names)), 3.0)
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)
    for ax, var in zip(axes[0], names):
        xs = list(range(len(variables[var])))
        ax.set_xticks(xs, [str(v) for v in variables[var]])
        for obj, style in (("energy_pJ", "o-"), ("cycles", "s--"), ("area_mm2", "^:")):
            ys = [float("nan") if y is None else y for y in sens[var][obj]]
            ax.plot(xs, ys, style, label=obj)
        ax.set_title(var, fontsize=9)
        ax.axhline(1.0, color="grey", lw=0.6)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("median / overall median")
    axes[0][0].legend(fontsize=7)
    return figure_data_uri(fig, dpi=DPI)


def _breakdown(row: dict[str, Any]) -> list[list[str]]:
    """Each layer of a design's table: its ranks, energy and cycles before and after compression."""
    from haloc_hw.cost.table import CostTable

    table = CostTable.open(row["table"])
    rows = [["layer", "rank", "energy orig [nJ]", "energy [nJ]", "cycles orig", "cycles"]]
    ranks = {n: tuple(r) for n, r in row["ranks"].items()}
    for name in table.layers():
        eo, co = table.original_cost(name, "energy_pJ"), table.original_cost(name, "cycles")
        if name in ranks:
            e, c = table.cost(name, *ranks[name], "energy_pJ"), table.cost(name, *ranks[name], "cycles")
            rk = f"{ranks[name][0]}×{ranks[name][1]}"
        else:
            e, c, rk = eo, co, "kept"
        rows.append([name, rk, f"{eo / 1e3:.1f}", f"{e / 1e3:.1f}", f"{co:.0f}", f"{c:.0f}"])
    return rows


def write_html(path: Path, space: Any, rows: Sequence[dict[str, Any]], reference: dict[str, Any] | None,
               haloc: dict[str, Any], stats: dict[str, Any]) -> Path:
    variables = {k: list(v) for k, v in space.variables.items()}
    sens = sensitivity(rows, variables)
    chosen = [r for r in rows if r["method"] == "haloc"] or \
        sorted((r for r in rows if r["pareto"]), key=lambda r: r["edp"])[:3]
    blocks = [
        Block("heading", f"Co-design: {space.name}", level=1),
        Block("text", f"{stats['points']} points ({', '.join(f'{k}: {v}' for k, v in stats['status'].items())}), "
              f"{len(rows)} point × allocator rows, {sum(r['pareto'] for r in rows)} on the front over energy, "
              f"cycles, area and the accuracy proxy. Energy source: {rows[0]['energy_source'] if rows else '-'}; "
              f"area source: {rows[0]['area_source'] if rows else '-'}."),
        Block("heading", "Pareto front"), Block("image", image=front_plot(rows)),
    ]
    if reference is not None:
        blocks += [Block("heading", "Reference point"), Block("pre", json.dumps(reference, indent=1, default=str))]
    blocks += [Block("heading", "Per-variable sensitivity"), Block("image", image=sensitivity_plot(sens, variables)),
               Block("heading", "Chosen designs")]
    for r in chosen:
        label = ", ".join(f"{k}={v}" for k, v in r["values"].items())
        acc = f", HALOC top-1 {r['top1_haloc']:.2f} %" if r.get("top1_haloc") is not None else ""
        blocks.append(Block("heading", f"{r['id']} ({label}), {r['method']}: {r['energy_pJ'] / 1e6:.3f} µJ, "
                            f"{r['cycles']:.0f} cycles, {r['area_mm2']:.3f} mm²{acc}", level=3))
        blocks.append(Block("table", rows=_breakdown(r)))
    write_text_atomic(path, render_html(blocks, f"co-design: {space.name}"))
    return path
