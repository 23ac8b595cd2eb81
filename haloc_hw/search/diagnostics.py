"""Convergence of a search and the summary of a multi-seed study (docs/RESULTS.md section 7).

* :func:`entropy_curves` / :func:`plot_entropy`: each layer's normalised entropy of p per epoch,
  read from ``search_history.json`` (1 = uniform p, 0 = one-hot; recomputed from ``p`` for
  histories written before the search recorded it).
* :func:`budget_curve` / :func:`plot_budget_tracking`: the expected cost under p per epoch as a
  fraction of the budget, to see whether a penalty holds the budget or undercuts it.
* :func:`collect_study` / :func:`study_markdown` / :func:`plot_accuracy_vs_energy`: the runs of
  ``scripts/study_seeds.sh`` (``OUT/sSEED/METHOD/metrics.json``) as per-seed rows, per-method mean
  and standard deviation of top-1, its change against the seed's base, FLOPs and Eyeriss energy.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from haloc_hw.errors import HalocError

METHOD_ORDER = ("haloc", "uniform", "vbmf", "greedy", "alds")


def _entropy(p: Sequence[float]) -> float:
    if len(p) < 2:
        return 0.0
    return float(-sum(v * math.log(v) for v in p if v > 0) / math.log(len(p)))


def entropy_curves(history: Mapping[str, Any]) -> dict[str, list[float]]:
    """Per layer, the normalised entropy of p after each epoch of a search history."""
    out: dict[str, list[float]] = {}
    for record in history.get("epochs", []):
        values = record.get("entropy") or {n: _entropy(p) for n, p in record.get("p", {}).items()}
        for name, value in values.items():
            out.setdefault(name, []).append(float(value))
    return out


def plot_entropy(history: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """One line per layer: normalised entropy of p against the search epoch (PNG at ``path``)."""
    from haloc_hw.report.plots import _save

    curves = entropy_curves(history)
    if not curves:
        raise HalocError("the search history has no epochs", key="epochs", fix="plot a finished search")
    fig, ax = _epoch_curves(curves, "entropy of p / log(#candidates)", title or "convergence of p per layer")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    return _save(fig, Path(path))


def _epoch_curves(curves: Mapping[str, Sequence[float]], ylabel: str, title: str, **line: Any) -> tuple[Any, Any]:
    """A figure with one line per named curve against the search epoch (1, 2, ...), before its legend."""
    from haloc_hw.report.plots import _colors, _figure

    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for color, (name, values) in zip(_colors(len(curves)), curves.items()):
        ax.plot(range(1, len(values) + 1), values, color=color, label=name, linewidth=1.2, **line)
    ax.set_xlabel("search epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig, ax


def budget_curve(history: Mapping[str, Any]) -> list[float]:
    """The expected whole-model cost under p after each epoch, as a fraction of the search's budget."""
    budget = history.get("budget")
    if not isinstance(budget, (int, float)) or budget <= 0:
        raise HalocError("the search history records no positive budget", key="budget",
                         fix="plot the search_history.json of a finished haloc-hw search")
    return [float(record["expected_cost"]) / budget for record in history.get("epochs", [])
            if record.get("expected_cost") is not None]


def plot_budget_tracking(histories: Mapping[str, Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """One line per labelled search: E_p[cost] / budget against the search epoch (PNG at ``path``)."""
    from haloc_hw.report.plots import _save

    curves = {label: budget_curve(history) for label, history in histories.items()}
    curves = {label: values for label, values in curves.items() if values}
    if not curves:
        raise HalocError("no search history with epochs to plot", key="epochs", fix="plot finished searches")
    fig, ax = _epoch_curves(curves, "expected cost under p / budget", title or "how the search holds its budget",
                            marker="o", markersize=3)
    ax.axhline(1.0, color="0.4", linestyle=":", linewidth=1.0)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, Path(path))


@dataclass(frozen=True)
class StudyRun:
    """One finished run of the study."""

    seed: int
    method: str
    top1: float
    base_top1: float
    flops_reduction: float   # 1 - compressed / original MACs
    energy_ratio: float      # compressed / original Eyeriss energy
    distill: Any

    @property
    def delta(self) -> float:
        return self.top1 - self.base_top1


def collect_study(root: str | Path) -> list[StudyRun]:
    """Every ``sSEED/METHOD/metrics.json`` under ``root`` (unfinished runs are left out)."""
    runs = []
    for metrics_path in sorted(Path(root).glob("s*/*/metrics.json")):
        seed_dir, method = metrics_path.parent.parent.name, metrics_path.parent.name
        if method == "base":  # the base model's own metrics, not a compression run
            continue
        try:
            seed = int(seed_dir[1:])
            m = json.loads(metrics_path.read_text())
            energy = m["table_cost"]["energy_pJ"]
            runs.append(StudyRun(seed=seed, method=method, top1=float(m["top1"]["compressed"]),
                                 base_top1=float(m["top1"]["original"]),
                                 flops_reduction=1 - m["macs"]["compressed"] / m["macs"]["original"],
                                 energy_ratio=energy["compressed"] / energy["original"], distill=m.get("distill")))
        except (ValueError, KeyError, TypeError) as err:
            raise HalocError(f"not a run's metrics.json ({err})", file=metrics_path, fix="re-run that run") from None
    return runs


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def study_markdown(runs: Sequence[StudyRun]) -> str:
    """Per-method mean ± std (sample std over seeds) and the per-seed table, as Markdown."""
    methods = [m for m in METHOD_ORDER if any(r.method == m for r in runs)]
    methods += sorted({r.method for r in runs} - set(methods))
    seeds = sorted({r.seed for r in runs})
    lines = ["| method | seeds | top-1 [%] | Δ top-1 [pp] | FLOPs ↓ [%] | Eyeriss energy (of the original) |",
             "|---|---:|---|---|---|---|"]
    for method in methods:
        rows = [r for r in runs if r.method == method]
        lines.append(f"| {method} | {len(rows)} | {_mean_std([r.top1 for r in rows])} | "
                     f"{_mean_std([r.delta for r in rows])} | {_mean_std([100 * r.flops_reduction for r in rows])} | "
                     f"{_mean_std([r.energy_ratio for r in rows])} |")
    lines += ["", "| seed | base top-1 | " + " | ".join(methods) + " |", "|---:|---:|" + "---:|" * len(methods)]
    for seed in seeds:
        by = {r.method: r for r in runs if r.seed == seed}
        base = next(iter(by.values())).base_top1
        cells = [f"{by[m].top1:.2f} ({by[m].delta:+.2f})" if m in by else "–" for m in methods]
        lines.append(f"| {seed} | {base:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_energy(runs: Sequence[StudyRun], path: str | Path, title: str = "") -> Path:
    """Δ top-1 against Eyeriss energy, one colour per method, one point per seed."""
    from haloc_hw.report.plots import _colors, _figure, _save

    if not runs:
        raise HalocError("no finished runs to plot", key="runs", fix="run scripts/study_seeds.sh first")
    methods = [m for m in METHOD_ORDER if any(r.method == m for r in runs)]
    methods += sorted({r.method for r in runs} - set(methods))
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for color, method in zip(_colors(len(methods)), methods):
        rows = [r for r in runs if r.method == method]
        ax.scatter([r.energy_ratio for r in rows], [r.delta for r in rows], color=color, label=method, s=24)
    ax.axhline(-0.3, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("Eyeriss energy / original")
    ax.set_ylabel("Δ top-1 against the base [pp]")
    ax.set_title(title or "accuracy against energy, one point per seed")
    ax.legend(fontsize=7)
    return _save(fig, Path(path))
