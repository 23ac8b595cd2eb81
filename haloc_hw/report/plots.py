"""PNG plots of run folders: chosen ranks, search probabilities, training curves, accuracy vs cost, layer costs.

Every function takes :class:`~haloc_hw.report.runs.RunRecord` objects and a PNG path, writes
the figure atomically and returns the path (or ``None`` when the runs hold nothing to plot,
e.g. no ``search_history.json``). Matplotlib's object API is used with the Agg canvas, so
nothing touches pyplot's global state or needs a display. Values are shown in the unit
prefix that keeps them between 1 and 1000 (µJ, Mcycles, ms ...), and every axis says it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.fileio import atomic_path
from haloc_hw.report.runs import RunRecord, pareto_indices

log = logging.getLogger(__name__)

DPI = 130
#: metric key -> (axis name, base unit, prefixes as (factor, unit) from the smallest)
UNITS: dict[str, tuple[str, list[tuple[float, str]]]] = {
    "macs": ("FLOPs", [(1.0, "MAC"), (1e3, "kMAC"), (1e6, "MMAC"), (1e9, "GMAC"), (1e12, "TMAC")]),
    "params": ("parameters", [(1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G")]),
    "cycles": ("cycles", [(1.0, "cycles"), (1e3, "kcycles"), (1e6, "Mcycles"), (1e9, "Gcycles")]),
    "energy_pJ": ("energy", [(1.0, "pJ"), (1e3, "nJ"), (1e6, "µJ"), (1e9, "mJ"), (1e12, "J")]),
    "latency_s": ("latency", [(1e-9, "ns"), (1e-6, "µs"), (1e-3, "ms"), (1.0, "s")]),
    "edp": ("energy x delay", [(1.0, "pJ·cycles"), (1e6, "µJ·cycles"), (1e12, "J·cycles")]),
}
COST_KEYS: tuple[str, ...] = ("macs", "cycles", "energy_pJ", "latency_s")
MARKERS = "osD^v<>pPX*h"


def unit_for(metric: str, values: Sequence[float]) -> tuple[float, str]:
    """``(factor, unit)`` so that ``max(values) / factor`` lies in [1, 1000) where possible."""
    _, prefixes = UNITS.get(metric, (metric, [(1.0, "")]))
    top = max((abs(v) for v in values if v is not None), default=0.0)
    chosen = prefixes[0]
    for factor, unit in prefixes:
        if top >= factor:
            chosen = (factor, unit)
    return chosen


def axis_label(metric: str, unit: str) -> str:
    name = UNITS.get(metric, (metric, []))[0]
    return f"{name} [{unit}]" if unit else name


#: Candidates named in each panel of the p plot (the most probable at the end, plus the chosen one).
P_LABELLED = 5


def new_figure(width: float, height: float) -> Any:
    """A matplotlib figure on its own Agg canvas (no pyplot state, no display), laid out constrained."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


_figure = new_figure  # the name other modules import


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    log.info("wrote %s", path)
    return path


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def run_label(run: RunRecord) -> str:
    return run.name if run.method in run.name else f"{run.name} ({run.method})"


# ---------------------------------------------------------------------------------------


def plot_ranks(runs: Sequence[RunRecord], path: Path) -> Path:
    """Bar chart of the chosen rank per layer, runs side by side (two panels when r1 != r2 anywhere)."""
    layers: list[str] = []
    for run in runs:
        layers += [n for n in run.layer_ranks if n not in layers]
    equal = all(r1 == r2 for run in runs for r1, r2 in run.layer_ranks.values())
    panels = [("rank r1 = r2", 0)] if equal else [("output rank r1", 0), ("input rank r2", 1)]
    width = max(7.0, 0.32 * len(layers) * max(1.0, len(runs) / 2) + 2)
    fig = _figure(width, 3.2 * len(panels) + 0.8)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    colors = _colors(len(runs))
    bar = 0.8 / max(1, len(runs))
    for ax, (ylabel, k) in zip(axes, panels):
        for i, run in enumerate(runs):
            ranks = run.layer_ranks
            xs = [j + (i - (len(runs) - 1) / 2) * bar for j, n in enumerate(layers) if n in ranks]
            ys = [ranks[n][k] for n in layers if n in ranks]
            ax.bar(xs, ys, width=bar, color=colors[i], label=run_label(run))
        ax.set_ylabel(f"{ylabel} [channels]")
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Chosen Tucker-2 ranks per layer")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", fontsize=8, ncols=min(6, len(runs)))
    axes[-1].set_xlabel("layer")
    return _save(fig, path)


def plot_p_evolution(run: RunRecord, path: Path) -> Path | None:
    """Per layer, the probability p of each rank candidate after every search epoch.

    Layers of wide networks have dozens of candidates (VGG-16's 512-channel layers: 63), so
    only the chosen rank and the :data:`P_LABELLED` most probable at the end are coloured
    and named; the rest are thin grey lines. Each panel's y axis ends just above its largest
    p, since with many candidates every p stays small.
    """
    hist = run.search_history
    if not hist or not hist.get("epochs"):
        return None
    epochs = hist["epochs"]
    # layers with a single candidate have nothing to choose (p = 1 throughout): left out
    layers = [n for n, c in hist.get("candidates", {}).items() if len(c) > 1 and all(n in e.get("p", {}) for e in epochs)]
    if not layers:
        return None
    ncols = min(4, len(layers))
    nrows = math.ceil(len(layers) / ncols)
    fig = _figure(3.2 * ncols, 2.3 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    xs = list(range(1, len(epochs) + 1))
    for idx, name in enumerate(layers):
        ax = axes[idx // ncols][idx % ncols]
        cands = [tuple(c) for c in hist["candidates"][name]]
        final = tuple(run.layer_ranks[name]) if name in run.layer_ranks else None
        last = epochs[-1]["p"][name]
        named = set(sorted(range(len(cands)), key=lambda j: -last[j])[:P_LABELLED])
        if final in cands:
            named.add(cands.index(final))
        peak = 0.0
        for j, cand in enumerate(cands):  # grey lines first, so the named ones are drawn on top
            if j not in named:
                ys = [e["p"][name][j] for e in epochs]
                peak = max(peak, *ys)
                ax.plot(xs, ys, lw=0.6, color="0.75")
        for j in sorted(named):
            cand = cands[j]
            ys = [e["p"][name][j] for e in epochs]
            peak = max(peak, *ys)
            chosen = cand == final
            label = f"{cand[0]}" if cand[0] == cand[1] else f"{cand[0]}x{cand[1]}"
            ax.plot(xs, ys, marker="o", ms=3, lw=2.4 if chosen else 1.0,
                    color=cmap(j / max(1, len(cands) - 1)), label=label + (" (chosen)" if chosen else ""))
        hidden = len(cands) - len(named)
        ax.set_title(name + (f" ({hidden} more in grey)" if hidden else ""), fontsize=8)
        ax.set_ylim(0.0, min(1.02, max(0.05, 1.15 * peak)))
        ax.set_xticks(xs)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncols=2, title="rank", title_fontsize=6, loc="best")
        if idx % ncols == 0:
            ax.set_ylabel("p (probability)", fontsize=8)
        if idx // ncols == nrows - 1 or idx + ncols >= len(layers):
            ax.set_xlabel("search epoch", fontsize=8)
    for idx in range(len(layers), nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    fig.suptitle(f"Evolution of the rank probabilities p during the search ({run.name}; "
                 "layers with one candidate left out; each panel's own p scale)")
    return _save(fig, path)


def plot_training(runs: Sequence[RunRecord], path: Path) -> Path | None:
    """Fine-tuning curves: test top-1 and training loss per epoch, one line per run."""
    with_hist = [r for r in runs if r.train_history]
    if not with_hist:
        return None
    fig = _figure(10, 3.6)
    ax_acc, ax_loss = fig.subplots(1, 2)
    colors = _colors(len(runs))
    for i, run in enumerate(runs):
        if not run.train_history:
            continue
        hist = run.train_history
        ep = [h["epoch"] for h in hist]
        acc = [(h["epoch"], h["test_acc"]) for h in hist if h.get("test_acc") is not None]
        if acc:
            ax_acc.plot([a for a, _ in acc], [b for _, b in acc], marker="o", ms=3, color=colors[i], label=run_label(run))
        ax_loss.plot(ep, [h["loss"] for h in hist], marker="o", ms=3, color=colors[i], label=run_label(run))
    ax_acc.set_title("Fine-tuning: test accuracy")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 [%]")
    ax_loss.set_title("Fine-tuning: training loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    last = max(h["epoch"] for r in with_hist for h in r.train_history)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        if last <= 20:
            ax.set_xticks(range(1, last + 1))
    ax_loss.legend(fontsize=8)
    return _save(fig, path)


def plot_accuracy_vs_cost(runs: Sequence[RunRecord], path: Path) -> Path:
    """Top-1 against each model cost (FLOPs, cycles, energy, latency when known), with the Pareto front."""
    keys = [k for k in COST_KEYS if any(r.cost(k) is not None for r in runs)]
    fig = _figure(4.0 * len(keys), 3.9)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colors = _colors(len(runs))
    handles: dict[str, Any] = {}
    for ax, key in zip(axes, keys):
        values = [r.cost(k, w) for r in runs for k, w in ((key, "compressed"), (key, "original"))]
        factor, unit = unit_for(key, [v for v in values if v is not None])
        points = [(r.cost(key), r.top1()) for r in runs]
        for i, (run, (x, y)) in enumerate(zip(runs, points)):
            if x is None or y is None:
                continue
            h = ax.scatter([x / factor], [y], s=42, color=colors[i], marker=MARKERS[i % len(MARKERS)], zorder=3)
            handles.setdefault(run_label(run), h)
        originals = {(r.cost(key, "original"), r.top1("original")) for r in runs}
        for x, y in originals:
            if x is not None and y is not None:
                h = ax.scatter([x / factor], [y], s=90, marker="*", color="black", zorder=4)
                handles.setdefault("original (uncompressed)", h)
        front = pareto_indices([(x, y) for x, y in points], maximise=(False, True))
        if front:
            fx = sorted((points[i][0] / factor, points[i][1]) for i in front)
            (line,) = ax.step([p[0] for p in fx], [p[1] for p in fx], where="post", ls="--", color="gray", zorder=2,
                              marker="o", ms=13, mfc="none", mec="black")
            handles.setdefault("Pareto front (runs)", line)
        ax.set_xlabel(axis_label(key, unit))
        ax.set_ylabel("top-1 [%]")
        ax.set_title(f"accuracy vs {UNITS[key][0]}")
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncols=min(5, len(handles)), fontsize=8)
    return _save(fig, path)


def plot_layer_costs(runs: Sequence[RunRecord], path: Path, metric: str) -> Path | None:
    """Per-layer cost of the original layer and of each run's compressed layer (table values)."""
    first = runs[0].metrics.get("layers") or {}
    layers = [n for n, row in first.items() if f"original_{metric}" in row]
    if not layers:
        return None
    series: list[tuple[str, list[float | None], Any]] = []
    colors = _colors(len(runs))
    originals = [first[n][f"original_{metric}"] for n in layers]
    series.append(("original", originals, "lightgray"))
    for i, run in enumerate(runs):
        rows = run.metrics.get("layers") or {}
        series.append((run_label(run), [(rows.get(n) or {}).get(f"compressed_{metric}") for n in layers], colors[i]))
    factor, unit = unit_for(metric, [v for _, vs, _ in series for v in vs if v is not None])
    width = max(7.0, 0.3 * len(layers) * max(1.0, len(series) / 2) + 2)
    fig = _figure(width, 4.2)
    ax = fig.subplots()
    bar = 0.85 / len(series)
    for i, (label, vs, color) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * bar for j, v in enumerate(vs) if v is not None]
        ax.bar(xs, [v / factor for v in vs if v is not None], width=bar, color=color, label=label,
               edgecolor="dimgray" if label == "original" else None, linewidth=0.5)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylabel(axis_label(metric, unit))
    ax.set_xlabel("layer")
    arches = sorted({r.arch for r in runs})
    ax.set_title(f"Per-layer {UNITS.get(metric, (metric,))[0]}: original vs compressed (table: {', '.join(arches)})")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper right", fontsize=8, ncols=min(6, len(series)))
    return _save(fig, path)
