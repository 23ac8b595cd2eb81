"""One design point, start to finish, as a picklable job: render, price, cost table, rank allocations.

:func:`evaluate_point` runs in a worker (a local process or a Dask worker) and returns a
plain dict (JSON-ready), so the parent can write it at once and a rerun reuses it. It never
raises for a problem of the point itself: a render that fails, an area over the limit or a
layer the array cannot map become the result's ``status`` and ``error``, and the parent
decides (the other points are still worth keeping).

The cost table of a point is built with the analytical backend into
``tables/<hardware hash>.sqlite``: the hash is the backend fingerprint (architecture,
energies, constraints, mapper settings), so points that render to the same hardware share
one table, and a rerun after a kill finds every finished entry in it (the table commits each
entry as it is evaluated). Inside a table, identical workloads are evaluated once.

Ranks are allocated under the budget by the cheap allocators of :mod:`haloc_hw.baselines`
(``uniform``: one rank fraction everywhere; ``greedy``: cost saved per added Tucker-2 error).
Both need only the table and, for greedy, the candidates' Tucker-2 errors, which do not
depend on the hardware and are computed once by the parent (:class:`PointJob.errors`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)

CHEAP_METHODS: tuple[str, ...] = ("uniform", "greedy")
RESULT_VERSION = 1


@dataclass(frozen=True)
class PointJob:
    """Everything a worker needs for one point (plain, picklable data)."""

    point_id: str
    index: int
    values: dict[str, Any]
    design: tuple[str, ...]
    constraint_files: tuple[str, ...]
    workdir: str
    tables_dir: str
    layers: tuple[Any, ...]  # LayerInfo
    candidates: dict[str, list[tuple[int, int]]]
    channels: dict[str, tuple[int, int]]
    errors: dict[str, dict[str, float]]  # layer -> "r1,r2" -> relative Tucker-2 error
    weight_norms: dict[str, float]  # layer -> ||W||^2
    budget: Any  # rankspace.Budget
    methods: tuple[str, ...] = CHEAP_METHODS
    area_limit_mm2: float | None = None
    mapper_metric: str = "delay,energy"
    settings_key: str = ""


def proxy_error(ranks: dict[str, tuple[int, int]], job: PointJob) -> float:
    """Relative Frobenius error of all decomposed weights together, ``sqrt(sum e_l^2 |W_l|^2 / sum |W_l|^2)``.

    It ranks allocations by how much of the base model's weights they throw away (lower is
    better), the quantity the greedy allocator trades against cost; layers kept whole add 0.
    """
    return proxy_error_of(ranks, job.errors, job.weight_norms)


def proxy_error_of(ranks: dict[str, tuple[int, int]], errors: dict[str, dict[str, float]],
                   weight_norms: dict[str, float]) -> float:
    """:func:`proxy_error` from the per-candidate errors and squared weight norms."""
    total = sum(weight_norms.values())
    if total <= 0:
        return 0.0
    acc = 0.0
    for name, (r1, r2) in ranks.items():
        e = errors.get(name, {}).get(f"{r1},{r2}")
        if e is not None:
            acc += e * e * weight_norms.get(name, 0.0)
    return math.sqrt(acc / total)


def _allocate(method: str, table: Any, job: PointJob) -> dict[str, Any]:
    from haloc_hw.baselines import greedy_ranks, uniform_ranks

    cands = {n: table.candidates(n) for n in job.candidates if table.candidates(n)}
    if method == "uniform":
        res = uniform_ranks(table, cands, {n: job.channels[n] for n in cands}, job.budget)
    elif method == "greedy":
        errs = {n: [job.errors[n][f"{a},{b}"] for a, b in sorted({(int(a), int(b)) for a, b in c})]
                for n, c in cands.items()}
        res = greedy_ranks(table, cands, {}, job.budget, errors=errs)
    else:
        raise HalocError(f"unknown allocator '{method}'", key="methods", fix=f"use {', '.join(CHEAP_METHODS)}")
    ranks = {n: (int(r[0]), int(r[1])) for n, r in res.ranks.items()}
    costs = {m: table.model_cost(ranks, m) for m in ("energy_pJ", "cycles", "edp")}
    return {**costs, "ranks": {n: list(r) for n, r in ranks.items()},
            "proxy_error": proxy_error(ranks, job), "budget": res.plan.budget, "budget_met": bool(res.plan.met)}


def evaluate_point(job: PointJob) -> dict[str, Any]:
    """Render, price, check the area, build the table and allocate ranks for one point."""
    from haloc_hw.codesign.design_point import fingerprint, price_point

    start = time.perf_counter()
    out: dict[str, Any] = {"version": RESULT_VERSION, "id": job.point_id, "index": job.index, "values": dict(job.values),
                           "settings_key": job.settings_key, "status": "ok", "error": "", "allocations": {}}
    try:
        priced = price_point([Path(p) for p in job.design], [Path(p) for p in job.constraint_files], job.values,
                             workdir=Path(job.workdir))
    except HalocError as err:
        out.update(status="render_failed", error=str(err), seconds=time.perf_counter() - start)
        return out
    out.update(area_mm2=priced.area_mm2, energy_source=priced.energy_source, area_source=priced.area_source,
               pes=int(priced.arch.arithmetic.instances))
    if job.area_limit_mm2 is not None and priced.area_mm2 > job.area_limit_mm2:
        out.update(status="over_area", error=f"area {priced.area_mm2:.4g} mm^2 > limit {job.area_limit_mm2:g} mm^2",
                   seconds=time.perf_counter() - start)
        return out
    try:
        out.update(_table_and_ranks(job, priced, fingerprint))
    except HalocError as err:
        out.update(status="failed", error=str(err))
    out["seconds"] = time.perf_counter() - start
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (processes of one host; Dask workers on one file system)."""
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _table_and_ranks(job: PointJob, priced: Any, fingerprint: Any) -> dict[str, Any]:
    from haloc_hw.cost.analytical.backend import AnalyticalCostModel
    from haloc_hw.cost.table import BackendIdentity, build_table

    backend = AnalyticalCostModel(priced.arch, priced.energy, priced.constraints, metric=job.mapper_metric)
    identity = BackendIdentity.of(backend)
    hw = fingerprint({"name": identity.name, "version": identity.version, "fp": identity.fingerprint})[:16]
    path = Path(job.tables_dir) / f"{hw}.sqlite"
    cands = job.candidates
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_suffix(".lock")):  # two points that render alike share one table: build it once
        table = build_table(list(job.layers), backend, path,
                            candidates_fn=lambda info: cands.get(info.name, []), progress=False, strict="originals",
                            metadata={"codesign_point": job.point_id, "values": job.values})
    rep = table.build_report
    result: dict[str, Any] = {
        "table": str(path), "hardware": hw,
        "cache": {"entries": rep.entries, "cache_hits": rep.cache_hits, "evaluated": rep.evaluated,
                  "slots": len(job.layers) + 3 * sum(len(c) for c in cands.values())},
        "original": {m: table.model_cost({}, m) for m in ("energy_pJ", "cycles", "edp")},
    }
    allocs: dict[str, Any] = {}
    errors: list[str] = []
    for method in job.methods:
        try:
            allocs[method] = _allocate(method, table, job)
        except HalocError as err:  # e.g. an absolute budget this array cannot reach
            allocs[method] = {"error": str(err)}
            errors.append(f"{method}: {err.message}")
    result["allocations"] = allocs
    if errors and len(errors) == len(job.methods):
        result.update(status="infeasible", error="; ".join(errors))
    return result
