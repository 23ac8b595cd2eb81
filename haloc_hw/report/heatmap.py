"""Cost of one layer over its Tucker-2 ranks (r1, r2), like Figure 2 of the HALOC paper.

The point of the picture is where decomposition pays off: every cell is a candidate's cost,
and the contour (and the line on the colour bar) marks the cost of the original layer, so
cells on the cheap side of it are the ranks that save something. On a GPU that region is
not a simple corner (measured latency is not monotone in rank), which is why it is worth
looking at.

When a table holds only equal ranks (r1 = r2, the default candidate set) there is no
surface to draw, so the diagonal is drawn as a line chart and the title says so.

Plotting uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import logging
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from haloc_hw.errors import HalocError
from haloc_hw.fileio import atomic_path

if TYPE_CHECKING:
    from haloc_hw.cost.table import CostTable

log = logging.getLogger(__name__)

# Cells are annotated with their ratio to the original when the grid is at most this wide.
ANNOTATE_MAX = 12

_UNITS: dict[str, tuple[str, float]] = {
    "latency_s": ("latency [ms]", 1e3),
    "energy_pJ": ("energy [µJ]", 1e-6),
    "cycles": ("cycles", 1.0),
    "edp": ("energy x cycles [pJ·cycles]", 1.0),
}


@dataclass(frozen=True)
class HeatmapResult:
    """What was drawn: ``kind`` is ``"heatmap"`` or ``"diagonal"``."""

    path: Path
    kind: str
    cells: int
    best: tuple[int, int]
    best_value: float
    original: float | None
    metric: str


def _label(metric: str) -> tuple[str, float]:
    return _UNITS.get(metric, (metric, 1.0))


def _check_grid(grid: Mapping[tuple[int, int], float], metric: str) -> dict[tuple[int, int], float]:
    clean: dict[tuple[int, int], float] = {}
    for (r1, r2), value in grid.items():
        if value is None or not math.isfinite(float(value)):
            log.warning("skipping candidate (%d, %d): %s is %r", r1, r2, metric, value)
            continue
        clean[(int(r1), int(r2))] = float(value)
    if not clean:
        raise HalocError(f"no candidate has a finite '{metric}'", key="metric", fix="pick a metric the table holds")
    return clean


def _outline(ax, inside) -> None:
    """Draw the border of the cells where ``inside`` is true (cell edges, not interpolated)."""
    from matplotlib.collections import LineCollection

    rows, cols = inside.shape
    segments = []
    for i in range(rows):
        for j in range(cols):
            if not inside[i, j]:
                continue
            if i == 0 or not inside[i - 1, j]:
                segments.append([(j - 0.5, i - 0.5), (j + 0.5, i - 0.5)])
            if i == rows - 1 or not inside[i + 1, j]:
                segments.append([(j - 0.5, i + 0.5), (j + 0.5, i + 0.5)])
            if j == 0 or not inside[i, j - 1]:
                segments.append([(j - 0.5, i - 0.5), (j - 0.5, i + 0.5)])
            if j == cols - 1 or not inside[i, j + 1]:
                segments.append([(j + 0.5, i - 0.5), (j + 0.5, i + 0.5)])
    if segments:
        ax.add_collection(LineCollection(segments, colors="red", linewidths=2.2))


def plot_rank_costs(
    grid: Mapping[tuple[int, int], float],
    original: float | None,
    out: str | Path,
    *,
    layer: str,
    metric: str = "latency_s",
    subtitle: str = "",
) -> HeatmapResult:
    """Draw ``grid`` (``{(r1, r2): cost}``) for one layer into ``out`` (PNG, PDF or SVG).

    ``original`` is the undecomposed layer's cost (``None`` when unknown: then nothing marks
    it). Equal ranks only give a line chart over the diagonal; otherwise a heat map with
    ``r2`` (input-channel rank) across and ``r1`` (output-channel rank) up, missing
    candidates left blank.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise HalocError(f"cannot tell the image format of '{out.name}'", key="--out", fix="end the file name in .png, .pdf or .svg")
    cells = _check_grid(grid, metric)
    label, scale = _label(metric)
    best = min(cells, key=lambda k: cells[k])
    best_value = cells[best]
    diagonal = all(r1 == r2 for r1, r2 in cells)
    title = f"{layer}: {metric} over Tucker-2 ranks"
    fig, ax = plt.subplots(figsize=(7.0, 5.6), dpi=120)
    try:
        if diagonal:
            kind = "diagonal"
            ranks = sorted(r for r, _ in cells)
            values = [cells[(r, r)] * scale for r in ranks]
            ax.plot(ranks, values, marker="o", color="tab:blue", label="Tucker-2 candidate (r1 = r2)")
            if original is not None:
                ax.axhline(original * scale, color="tab:red", linestyle="--", label=f"original layer: {original * scale:.4g}")
                if any(v < original * scale for v in values):
                    ax.fill_between(ranks, values, original * scale, where=[v < original * scale for v in values],
                                    color="tab:green", alpha=0.15, interpolate=True, label="cheaper than original")
            ax.plot([best[0]], [best_value * scale], marker="*", markersize=16, color="gold",
                    markeredgecolor="black", linestyle="none", label=f"best: r={best[0]}")
            ax.set_xlabel("rank r = r1 = r2")
            ax.set_ylabel(label)
            ax.set_xticks(ranks if len(ranks) <= 16 else ranks[:: math.ceil(len(ranks) / 16)])
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize=8)
            title += "\n(table holds only equal ranks: diagonal shown as a line)"
        else:
            kind = "heatmap"
            r1s = sorted({k[0] for k in cells})
            r2s = sorted({k[1] for k in cells})
            row, col = {r: i for i, r in enumerate(r1s)}, {r: j for j, r in enumerate(r2s)}
            data = np.full((len(r1s), len(r2s)), np.nan)
            for (r1, r2), value in cells.items():
                data[row[r1], col[r2]] = value * scale
            annotate = max(data.shape) <= ANNOTATE_MAX
            masked = np.ma.masked_invalid(data)
            cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
            image = ax.imshow(masked, origin="lower", cmap=cmap, aspect="auto")
            bar = fig.colorbar(image, ax=ax)
            bar.set_label(label)
            ax.set_xticks(range(len(r2s)), [str(r) for r in r2s], rotation=90 if len(r2s) > 12 else 0)
            ax.set_yticks(range(len(r1s)), [str(r) for r in r1s])
            ax.set_xlabel("r2 (input-channel rank)")
            ax.set_ylabel("r1 (output-channel rank)")
            low, high = float(np.nanmin(data)), float(np.nanmax(data))
            if original is not None:
                level = original * scale
                bar.set_label(f"{label}; red: original layer = {level:.4g}")
                if low <= level <= high:
                    bar.ax.axhline(level, color="red", linewidth=2)
                cheap = np.where(np.isnan(data), False, data < level)
                _outline(ax, cheap)
                if annotate:
                    for i in range(len(r1s)):
                        for j in range(len(r2s)):
                            if not np.isnan(data[i, j]):
                                shade = (data[i, j] - low) / (high - low) if high > low else 0.0
                                ax.text(j, i, f"{data[i, j] / level:.2f}", ha="center", va="center", fontsize=7,
                                        color="black" if shade > 0.6 else "white")
                if not cheap.any():
                    subtitle = ("No candidate is cheaper than the original. " + subtitle).strip()
            corner = 0.3 if annotate else 0.0  # keep the cell's number readable
            ax.plot([col[best[1]] - corner], [row[best[0]] + corner], marker="*",
                    markersize=11 if corner else 16, color="gold", markeredgecolor="black", linestyle="none")
            title += f"\nstar: best ({best[0]}, {best[1]});"
            title += " red outline: cheaper than the original layer" if original is not None else ""
            if original is not None and annotate:
                title += " (cells: cost / original)"
        if subtitle:
            title += "\n" + "\n".join(textwrap.wrap(subtitle, 80))
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=out.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)
    return HeatmapResult(path=out, kind=kind, cells=len(cells), best=best, best_value=best_value, original=original,
                         metric=metric)


def layer_grid(table: CostTable, layer: str, metric: str) -> tuple[dict[tuple[int, int], float], float]:
    """``({(r1, r2): cost}, original cost)`` of one layer of a cost table."""
    info = table.layer(layer)
    candidates = table.candidates(layer)
    if not info.decomposable or not candidates:
        usable = [name for name in table.decomposable_layers() if table.candidates(name)]
        shown = ", ".join(usable[:8]) + (", ..." if len(usable) > 8 else "")
        raise HalocError(
            f"layer '{layer}' has no rank candidates in this table"
            + ("" if info.decomposable else " (it is not decomposable)"),
            file=table.path,
            key="--layer",
            fix=f"pick one of: {shown}" if usable else "rebuild the table with candidates",
        )
    grid = {(r1, r2): table.cost(layer, r1, r2, metric) for r1, r2 in candidates}
    return grid, table.original_cost(layer, metric)


def _table_subtitle(table: CostTable) -> str:
    meta = table.metadata
    fields = meta.get("key_fields") if isinstance(meta.get("key_fields"), dict) else {}
    parts = [f"backend {meta.get('backend', '?')}"]
    if meta.get("model"):
        parts.insert(0, str(meta["model"]))
    for name in ("device", "dtype", "batch", "memory_format"):
        if fields.get(name) is not None:
            parts.append(f"{name} {fields[name]}")
    if meta.get("fused"):
        parts.append("fused triples")
    return ", ".join(parts)


def default_metric(table: CostTable) -> str:
    """What a table is mostly read for: latency for a measured GPU table, energy for an accelerator model's."""
    return "latency_s" if table.metadata.get("backend") == "gpu" else "energy_pJ"


def plot_table_layer(table_path: str | Path, layer: str, out: str | Path, metric: str | None = None) -> HeatmapResult:
    """:func:`plot_rank_costs` for one layer of the cost table file ``table_path`` (``metric``: the
    table's :func:`default_metric` when not given)."""
    from haloc_hw.cost.table import CostTable

    table = CostTable.open(table_path)
    metric = metric or default_metric(table)
    grid, original = layer_grid(table, layer, metric)
    return plot_rank_costs(grid, original, out, layer=layer, metric=metric, subtitle=_table_subtitle(table))
