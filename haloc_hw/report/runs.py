"""Reading run folders (``haloc-hw search`` or ``haloc-hw baseline``) for reports, and Pareto sets.

A run folder must hold ``config.yaml``, ``ranks.json`` and ``metrics.json``; it may hold
``search_history.json`` (a search) and a fine-tuning ``history.json`` (in ``finetune/`` as
the search and baselines write it, or at the top for a plain training run). Anything
missing that is required is reported by name in one :class:`HalocError`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.errors import HalocError
from haloc_hw.fileio import read_yaml

log = logging.getLogger(__name__)

from haloc_hw.runfolder import (CONFIG_FILE, HISTORY_PLACES, METRICS_FILE, RANKS_FILE, REQUIRED_FILES,  # noqa: F401
                                 SEARCH_HISTORY_FILE, RunFolder)


@dataclass
class RunRecord:
    """One run folder as a report sees it."""

    path: Path
    name: str
    config: dict[str, Any]
    ranks: dict[str, Any]
    metrics: dict[str, Any]
    search_history: dict[str, Any] | None = None
    train_history: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        cfg = self.config
        if cfg.get("method"):
            return str(cfg["method"])
        return "haloc" if cfg.get("command", "search") == "search" else str(cfg.get("command"))

    @property
    def model(self) -> str:
        return str(self.metrics.get("model") or self.config.get("model") or "?")

    @property
    def data(self) -> str:
        data = self.config.get("data")
        named = data.get("name") if isinstance(data, dict) else data  # RunConfig settings, or an older run's name
        return str(self.metrics.get("data") or self.config.get("dataset") or named or "?")

    @property
    def _table_metadata(self) -> dict[str, Any]:
        return (self.config.get("table") or {}).get("metadata") or {}

    @property
    def arch(self) -> str:
        """The hardware the costs are for: the arch file's name, or the GPU a latency table was measured on."""
        meta = self._table_metadata
        if meta.get("backend") == "gpu":
            fields = meta.get("key_fields") or {}
            return f"gpu ({fields.get('device', '?')}, {fields.get('dtype', '?')})"
        arch = self.config.get("arch")
        if isinstance(arch, list):
            arch = arch[0] if arch else None
        return Path(str(arch)).stem if arch else "-"

    @property
    def backend(self) -> str:
        return str(self._table_metadata.get("backend") or self.config.get("backend") or "-")

    @property
    def budget_text(self) -> str:
        budget = self.metrics.get("budget") or {}
        met = budget.get("met")
        text = f"{budget.get('text', '?')} of {budget.get('metric', '?')}"
        return text + ("" if met is None else (" (met)" if met else " (NOT met)"))

    @property
    def layer_ranks(self) -> dict[str, tuple[int, int]]:
        return {name: (int(v["r1"]), int(v["r2"])) for name, v in self.ranks.get("layers", {}).items()}

    def top1(self, which: str = "compressed") -> float | None:
        value = (self.metrics.get("top1") or {}).get(which)
        return None if value is None else float(value)

    def cost(self, key: str, which: str = "compressed") -> float | None:
        """A model total: ``macs`` / ``params`` from the model, the rest from the run's cost table."""
        if key in ("macs", "params"):
            value = (self.metrics.get(key) or {}).get(which)
        else:
            value = ((self.metrics.get("table_cost") or {}).get(key) or {}).get(which)
        return None if value is None else float(value)

    def reduction(self, key: str) -> float | None:
        """``1 - compressed / original`` of a cost (0.6 = 60 % less), or ``None`` when unknown."""
        orig, comp = self.cost(key, "original"), self.cost(key, "compressed")
        if orig is None or comp is None or orig == 0:
            return None
        return 1.0 - comp / orig


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise HalocError(f"cannot read {path.name} ({err.__class__.__name__}: {str(err)[:120]})", file=path,
                         fix="re-run the command that wrote this run folder") from None


def load_run(path: str | Path, name: str | None = None) -> RunRecord:
    """Read one run folder; :class:`HalocError` names every required file it lacks."""
    path = Path(path)
    if not path.is_dir():
        raise HalocError("run folder not found", file=path, key="RUN",
                         fix="pass folders written by 'haloc-hw search' or 'haloc-hw baseline'")
    folder = RunFolder(path)
    missing = folder.missing()
    if missing:
        raise HalocError(f"run folder lacks {', '.join(missing)}", file=path, key="RUN",
                         fix="finish the run (re-run the same search/baseline command) or leave this folder out")
    config = read_yaml(folder.config) or {}
    ranks = _read_json(folder.ranks)
    metrics = _read_json(folder.metrics)
    for what, obj, keys in ((RANKS_FILE, ranks, ("layers", "metric")), (METRICS_FILE, metrics, ("top1", "macs"))):
        lacking = [k for k in keys if not isinstance(obj, dict) or k not in obj]
        if lacking:
            raise HalocError(f"{what} lacks {', '.join(lacking)}", file=path / what, key=lacking[0],
                             fix="re-run the command that wrote this run folder")
    if not isinstance(config, dict):
        raise HalocError("config.yaml is not a mapping", file=folder.config, fix="re-run the command")
    search_history = _read_json(folder.search_history) if folder.search_history.is_file() else None
    train_history = None
    for rel in HISTORY_PLACES:
        if (path / rel).is_file():
            train_history = _read_json(path / rel)
            break
    return RunRecord(path=path, name=name or path.name, config=config, ranks=ranks, metrics=metrics,
                     search_history=search_history, train_history=train_history)


def load_runs(paths: Sequence[str | Path]) -> list[RunRecord]:
    """Read several run folders; names are the folder names, made unique with their parents when needed."""
    if not paths:
        raise HalocError("no run folders given", key="RUN", fix="pass one or more run folders")
    resolved = [Path(p) for p in paths]
    names = [p.name for p in resolved]
    out = []
    for p, n in zip(resolved, names):
        if names.count(n) > 1:
            n = "/".join(p.resolve().parts[-2:])
        out.append(load_run(p, n))
    return out


def group_runs(runs: Sequence[RunRecord], *, allow_mixed: bool = False) -> dict[tuple[str, str], list[RunRecord]]:
    """Runs by (model, dataset); more than one group is an error unless ``allow_mixed``."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.model, run.data), []).append(run)
    if len(groups) > 1 and not allow_mixed:
        listing = "; ".join(f"{m} on {d}: {', '.join(r.name for r in rs)}" for (m, d), rs in groups.items())
        raise HalocError(f"runs of different models or datasets cannot share one comparison ({listing})",
                         key="RUN", fix="pass runs of one model and dataset, or add --group for one section each")
    return groups


def pareto_indices(points: Sequence[Sequence[float | None]], maximise: Sequence[bool]) -> list[int]:
    """Indices of the non-dominated points (``maximise[i]`` says the sense of coordinate ``i``).

    A point with an unknown (``None``) coordinate is never on the front. A point dominates
    another when it is at least as good in every coordinate and better in one; equal points
    are all kept.
    """
    signed = []
    for p in points:
        if any(v is None for v in p):
            signed.append(None)
        else:
            signed.append([float(v) if up else -float(v) for v, up in zip(p, maximise)])
    front = []
    for i, a in enumerate(signed):
        if a is None:
            continue
        dominated = any(b is not None and all(y >= x for x, y in zip(a, b)) and any(y > x for x, y in zip(a, b))
                        for j, b in enumerate(signed) if j != i)
        if not dominated:
            front.append(i)
    return front
