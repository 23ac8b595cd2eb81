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

import base64
import html
import io
import statistics
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.fileio import write_text_atomic


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def front_plot(rows: Sequence[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
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
    return _png(fig)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [v for v in variables if len(variables[v]) > 1]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.0 * max(1, len(names)), 3.0), squeeze=False)
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
    return _png(fig)


def _breakdown(row: dict[str, Any]) -> str:
    from haloc_hw.cost.table import CostTable

    table = CostTable.open(row["table"])
    lines = ["<tr><th>layer</th><th>rank</th><th>energy orig [nJ]</th><th>energy [nJ]</th>"
             "<th>cycles orig</th><th>cycles</th></tr>"]
    ranks = {n: tuple(r) for n, r in row["ranks"].items()}
    for name in table.layers():
        eo, co = table.original_cost(name, "energy_pJ"), table.original_cost(name, "cycles")
        if name in ranks:
            e, c = table.cost(name, *ranks[name], "energy_pJ"), table.cost(name, *ranks[name], "cycles")
            rk = f"{ranks[name][0]}×{ranks[name][1]}"
        else:
            e, c, rk = eo, co, "kept"
        lines.append(f"<tr><td>{html.escape(name)}</td><td>{rk}</td><td>{eo / 1e3:.1f}</td><td>{e / 1e3:.1f}</td>"
                     f"<td>{co:.0f}</td><td>{c:.0f}</td></tr>")
    return "<table>" + "".join(lines) + "</table>"


def write_html(path: Path, space: Any, rows: Sequence[dict[str, Any]], reference: dict[str, Any] | None,
               haloc: dict[str, Any], stats: dict[str, Any]) -> Path:
    variables = {k: list(v) for k, v in space.variables.items()}
    sens = sensitivity(rows, variables)
    chosen = [r for r in rows if r["method"] == "haloc"] or \
        sorted((r for r in rows if r["pareto"]), key=lambda r: r["edp"])[:3]
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>co-design: {esc(space.name)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>",
             f"<h1>Co-design: {esc(space.name)}</h1>",
             f"<p>{stats['points']} points ({', '.join(f'{k}: {v}' for k, v in stats['status'].items())}), "
             f"{len(rows)} point × allocator rows, {sum(r['pareto'] for r in rows)} on the front over energy, cycles, "
             f"area and the accuracy proxy. Energy source: {esc(str(rows[0]['energy_source'] if rows else '-'))}; "
             f"area source: {esc(str(rows[0]['area_source'] if rows else '-'))}.</p>",
             "<h2>Pareto front</h2>", f"<img src='{front_plot(rows)}'>"]
    if reference is not None:
        parts.append(f"<h2>Reference point</h2><pre>{esc(_json(reference))}</pre>")
    parts += ["<h2>Per-variable sensitivity</h2>", f"<img src='{sensitivity_plot(sens, variables)}'>",
              "<h2>Chosen designs</h2>"]
    for r in chosen:
        label = ", ".join(f"{k}={v}" for k, v in r["values"].items())
        acc = f", HALOC top-1 {r['top1_haloc']:.2f} %" if r.get("top1_haloc") is not None else ""
        parts.append(f"<h3>{esc(r['id'])} ({esc(label)}), {esc(r['method'])}: {r['energy_pJ'] / 1e6:.3f} µJ, "
                     f"{r['cycles']:.0f} cycles, {r['area_mm2']:.3f} mm²{acc}</h3>")
        parts.append(_breakdown(r))
    parts.append("</body></html>")
    write_text_atomic(path, "\n".join(parts))
    return path


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1, default=str)
