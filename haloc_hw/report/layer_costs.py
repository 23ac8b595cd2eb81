"""Per-layer cost of a finished run, before and after compression, read from its cost table.

The run's ``config.yaml`` names the table it searched on (``table.path``). When that file
is still there, every layer's original cost and the cost of its chosen candidate are read
from it, so a report shows the numbers the search optimised. When it is gone (a run folder
copied elsewhere) or no longer holds a chosen candidate, the copy in ``metrics.json``
(written from the same table when the run finished) is used, and the source says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError
from haloc_hw.report.runs import RunRecord

log = logging.getLogger(__name__)

#: Metrics a report shows per layer, in this order (those the table has a value for).
LAYER_METRICS: tuple[str, ...] = ("energy_pJ", "cycles", "latency_s")


@dataclass(frozen=True)
class LayerCost:
    """One layer: its chosen rank (``None`` when kept) and its cost per metric."""

    name: str
    rank: tuple[int, int] | None
    original: dict[str, float] = field(default_factory=dict)
    compressed: dict[str, float] = field(default_factory=dict)

    def ratio(self, metric: str) -> float | None:
        orig, comp = self.original.get(metric), self.compressed.get(metric)
        return None if orig is None or comp is None or orig == 0 else comp / orig


@dataclass(frozen=True)
class LayerCosts:
    """All layers of a run, the metrics they have and where the numbers come from."""

    layers: list[LayerCost]
    metrics: list[str]
    source: str  # "table" | "metrics.json" | "none"
    table_path: Path | None = None

    def as_metrics_rows(self) -> dict[str, dict[str, Any]]:
        """The ``metrics.json`` ``layers`` layout, which the per-layer plots read."""
        rows: dict[str, dict[str, Any]] = {}
        for layer in self.layers:
            row: dict[str, Any] = {"rank": None if layer.rank is None else list(layer.rank)}
            for m in self.metrics:
                row[f"original_{m}"] = layer.original.get(m)
                row[f"compressed_{m}"] = layer.compressed.get(m)
            rows[layer.name] = row
        return rows


def table_file(run: RunRecord) -> Path | None:
    """The run's cost table file, if it can still be found (as written, or beside the run)."""
    text = (run.config.get("table") or {}).get("path") if isinstance(run.config.get("table"), dict) else None
    if not text:
        return None
    given = Path(str(text))
    for candidate in (given, run.path / given.name, run.path.parent / given):
        if candidate.is_file():
            return candidate
    return None


def _from_table(run: RunRecord, path: Path) -> LayerCosts:
    from haloc_hw.cost.table import CostTable

    table = CostTable.open(path)
    names = table.layers()
    metrics = []
    for m in LAYER_METRICS:
        try:
            for name in names:
                float(table.original_cost(name, m))
        except (HalocError, TypeError, ValueError):
            continue
        metrics.append(m)
    ranks = run.layer_ranks
    unknown = [n for n in ranks if n not in names]
    if unknown:
        raise HalocError(f"the table has no layer {', '.join(unknown)}", file=path, key=unknown[0],
                         fix="pass the run folder with the table it was searched on")
    layers = []
    for name in names:
        rank = ranks.get(name)
        original = {m: float(table.original_cost(name, m)) for m in metrics}
        compressed = original if rank is None else {m: float(table.cost(name, rank[0], rank[1], m)) for m in metrics}
        layers.append(LayerCost(name, rank, original, dict(compressed)))
    return LayerCosts(layers, metrics, "table", path)


def _from_metrics(run: RunRecord) -> LayerCosts:
    rows = run.metrics.get("layers") or {}
    if not isinstance(rows, dict) or not rows:
        return LayerCosts([], [], "none")
    metrics = [m for m in LAYER_METRICS
               if all(isinstance(r, dict) and r.get(f"original_{m}") is not None for r in rows.values())]
    ranks = run.layer_ranks
    layers = []
    for name, row in rows.items():
        rank = ranks.get(name) or (tuple(row["rank"]) if row.get("rank") else None)
        layers.append(LayerCost(name, None if rank is None else (int(rank[0]), int(rank[1])),
                                {m: float(row[f"original_{m}"]) for m in metrics},
                                {m: float(row.get(f"compressed_{m}", row[f"original_{m}"])) for m in metrics}))
    return LayerCosts(layers, metrics, "metrics.json")


def layer_costs(run: RunRecord) -> LayerCosts:
    """Per-layer costs of ``run``: from its cost table when found and complete for its ranks, else ``metrics.json``."""
    path = table_file(run)
    if path is not None:
        try:
            return _from_table(run, path)
        except HalocError as err:
            log.warning("%s: per-layer costs taken from metrics.json instead (%s)", run.path, err)
    return _from_metrics(run)


__all__ = ["LAYER_METRICS", "LayerCost", "LayerCosts", "layer_costs", "table_file"]
