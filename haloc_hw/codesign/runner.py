"""A co-design run: every point priced and allocated, the Pareto set, HALOC on its best points, a report.

Run folder (``cfg.out``)::

    space.yaml          the space as given;  config.json  the settings
    points/<id>/        per point: result.json (written when the point finishes), its rendered files
    tables/<hash>.sqlite cost tables, one per distinct hardware (shared by points that render alike)
    errors.json         Tucker-2 errors of every candidate of the base model (hardware-independent)
    points.csv          every point x allocator: variables, area, energy, cycles, EDP, ranks, proxy, accuracy
    pareto.csv          the non-dominated rows
    codesign.json       everything above plus the reference point's dominance and the HALOC runs
    haloc/<id>/         full HALOC search + fine-tuning runs of the chosen Pareto points
    report.html         Pareto front, per-variable sensitivity, chosen designs' per-layer breakdown

Resumable: ``points/<id>/result.json`` is written atomically as soon as a point finishes,
and a rerun with the same settings reuses it (a point is identified by its values alone);
a killed table build resumes from its committed entries; a finished HALOC run is read back.

Objectives of the front (all minimised): energy, cycles, area and the accuracy proxy
(:func:`~haloc_hw.codesign.evaluate.proxy_error`). The HALOC expected-cost decode is not
used on a supernet shared between points: the supernet's architecture parameters are
trained against one table's costs, and reading them against another table is sound only
if every layer ranks its candidates the same way on both, which differs between PE arrays
(a 16-channel candidate that fills one array leaves another idle). So HALOC runs on each
chosen point with its own table, and the cheap allocators, which need no training, rank all.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from haloc_hw.codesign.config import CodesignConfig
from haloc_hw.codesign.evaluate import PointJob, evaluate_point
from haloc_hw.codesign.space import DesignSpace, Point, enumerate_points, find_point, load_space
from haloc_hw.errors import HalocError
from haloc_hw.fileio import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

OBJECTIVES: tuple[str, ...] = ("energy_pJ", "cycles", "area_mm2", "proxy_error")


@dataclass
class CodesignResult:
    """What :func:`run` returns: every row (point x allocator), the front, and the files written."""

    out: Path
    points: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    pareto: list[dict[str, Any]]
    reference: dict[str, Any] | None
    haloc: dict[str, Any]
    stats: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def _make_executor(cfg: CodesignConfig, client: Any = None) -> Any:
    from haloc_hw.cost.executors import DaskExecutor, make_executor

    if client is not None:
        return DaskExecutor(client=client)
    return make_executor(cfg.jobs, cfg.scheduler, timeout_s=cfg.scheduler_timeout_s)


def _settings_key(cfg: CodesignConfig, space: DesignSpace) -> str:
    from haloc_hw.codesign.design_point import fingerprint

    from haloc_hw.fileio import file_sha256

    # the design's files (the top file's folder: included arch, component classes) and the
    # constraint files by content, so an edited design is evaluated again
    folders = sorted({p.parent for p in space.design})
    contents = {str(f): file_sha256(f) for d in folders for f in sorted([*d.glob("*"), *d.glob("*/*")])
                if f.is_file() and f.suffix in (".yaml", ".yml", ".jinja2", ".j2")}
    contents.update({str(f): file_sha256(f) for f in space.constraint_files})
    return fingerprint({"cfg": cfg.settings_key(), "design": [str(p) for p in space.design], "contents": contents,
                        "constraint_files": [str(p) for p in space.constraint_files],
                        "area_limit_mm2": space.area_limit_mm2})[:16]


def _read_result(path: Path, key: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("settings_key") != key or doc.get("status") not in ("ok", "infeasible", "over_area"):
        return None  # other settings, or a failure worth retrying
    return doc


def run(space: DesignSpace | str | Path, cfg: CodesignConfig, *, client: Any = None,
        echo: Callable[[str], None] = log.info) -> CodesignResult:
    """Run the co-design described by ``space`` with ``cfg`` (see the module docstring).

    ``client``: a ``distributed.Client`` to run the points on (tests pass a ``LocalCluster``'s);
    otherwise ``cfg.scheduler`` or a local pool of ``cfg.jobs`` processes.
    Raises :class:`HalocError` (after keeping every finished point) for: a point whose render
    fails, an area limit below every point, a space with no feasible point.
    """
    start = time.perf_counter()
    if not isinstance(space, DesignSpace):
        space = load_space(space)
    cfg.validate()
    points, removed = enumerate_points(space)
    from haloc_hw.rankspace import parse_budget

    budget = parse_budget(cfg.budget, cfg.metric)
    executor = _make_executor(cfg, client)  # an unreachable scheduler fails here, before anything is written
    try:
        out = cfg.out
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "space.yaml", space.path.read_text() if space.path.is_file() else json.dumps(space.raw))
        write_json_atomic(out / "config.json", cfg.to_dict())
        echo(f"{space.name}: {len(points)} of {space.size} points satisfy the constraints"
             + "".join(f"; '{c}' removed {n}" for c, n in removed.items() if n))

        from haloc_hw.codesign import stages

        data = stages.prepare_data(cfg)
        model, base_info = stages.base_model(cfg, data, out)
        prep = _prepare_model(cfg, model, data, out)
        key = _settings_key(cfg, space)
        results: dict[str, dict[str, Any]] = {}
        jobs: list[PointJob] = []
        for p in points:
            old = _read_result(out / "points" / p.id / "result.json", key)
            if old is not None:
                results[p.id] = old
                continue
            jobs.append(PointJob(point_id=p.id, index=p.index, values=p.values, design=tuple(map(str, space.design)),
                                 constraint_files=tuple(map(str, space.constraint_files)),
                                 workdir=str(out / "points" / p.id), tables_dir=str(out / "tables"),
                                 budget=budget, area_limit_mm2=space.area_limit_mm2, methods=tuple(cfg.methods),
                                 settings_key=key, **prep))
        echo(f"{len(results)} point(s) reused from an earlier start, {len(jobs)} to evaluate on "
             f"{executor.name} ({executor.workers} worker(s))")
        eval_start = time.perf_counter()
        for res in executor.run(evaluate_point, jobs):
            job = jobs[res.index]
            doc = res.value if res.ok else {"id": job.point_id, "index": job.index, "values": job.values,
                                            "status": "failed", "error": res.error, "settings_key": key}
            write_json_atomic(out / "points" / job.point_id / "result.json", doc)
            results[job.point_id] = doc
        eval_seconds = time.perf_counter() - eval_start
    finally:
        executor.close()

    ordered = [results[p.id] for p in points]
    _raise_for_points(space, ordered)
    rows = _rows(ordered, cfg.methods)
    _mark_pareto(rows)
    reference = _reference(space, points, rows)
    haloc = _run_haloc(cfg, data, model, rows, out, echo)
    rows += _haloc_rows(rows, haloc, prep)
    _mark_pareto(rows)
    stats = _stats(ordered, len(jobs), eval_seconds, time.perf_counter() - start)
    files = _write(out, space, cfg, ordered, rows, reference, haloc, stats, base_info)
    pareto = [r for r in rows if r["pareto"]]
    echo(f"{len(rows)} row(s), {len(pareto)} on the Pareto front; {stats['points_per_second']:.3g} points/s, "
         f"table cache hit rate {stats['cache_hit_rate']:.1%}")
    return CodesignResult(out, ordered, rows, pareto, reference, haloc, stats, files)


def _prepare_model(cfg: CodesignConfig, model: Any, data: Any, out: Path) -> dict[str, Any]:
    """Layers, rank candidates, channels and Tucker-2 errors of the base model (the same on every point)."""
    from haloc_hw.baselines import candidate_errors, conv_weights
    from haloc_hw.decompose import rank_candidates
    from haloc_hw.fileio import file_sha256
    from haloc_hw.workload import extract_shapes

    layers = extract_shapes(model, data.input_size, 1)
    candidates = {i.name: [(int(a), int(b)) for a, b in rank_candidates(i.shape, step=cfg.step)]
                  for i in layers if i.decomposable}
    candidates = {n: c for n, c in candidates.items() if c}
    weights = conv_weights(model, list(candidates))
    channels = {n: (int(w.shape[0]), int(w.shape[1])) for n, w in weights.items()}
    norms = {n: float((w.double() ** 2).sum()) for n, w in weights.items()}
    cache = out / "errors.json"
    base_file = Path(cfg.base) / "model.pt" if cfg.base is not None and Path(cfg.base).is_dir() else cfg.base
    base_sha = file_sha256(base_file) if base_file is not None and Path(base_file).is_file() else None
    errors: dict[str, dict[str, float]] | None = None
    if cache.is_file() and base_sha is not None:
        doc = json.loads(cache.read_text())
        if doc.get("base_sha256") == base_sha and doc.get("step") == cfg.step:
            errors = doc["errors"]
    if errors is None:
        raw = candidate_errors(weights, candidates)
        errors = {n: {f"{a},{b}": e for (a, b), e in zip(candidates[n], raw[n])} for n in candidates}
        write_json_atomic(cache, {"base_sha256": base_sha, "step": cfg.step, "errors": errors})
    return {"layers": tuple(layers), "candidates": candidates, "channels": channels, "errors": errors,
            "weight_norms": norms}


def _raise_for_points(space: DesignSpace, results: Sequence[dict[str, Any]]) -> None:
    failed = [r for r in results if r["status"] == "render_failed"]
    if failed:
        r = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        label = ", ".join(f"{k}={v}" for k, v in r["values"].items())
        raise HalocError(f"point {r['id']} ({label}) does not render{more}: {r['error']}", file=space.path,
                         key="codesign_space.variables",
                         fix="change the values or the design; finished points are kept and reused on rerun")
    priced = [r for r in results if r.get("area_mm2") is not None]
    if space.area_limit_mm2 is not None and priced and all(r["status"] == "over_area" for r in priced):
        small = min(priced, key=lambda r: r["area_mm2"])
        raise HalocError(f"area limit {space.area_limit_mm2:g} mm^2 is below every point (smallest: "
                         f"{small['area_mm2']:.4g} mm^2 at {small['id']})", file=space.path,
                         key="codesign_space.area_limit_mm2", fix=f"raise the limit to at least {small['area_mm2']:.4g}")
    if not any(r["status"] == "ok" for r in results):
        first = results[0]
        raise HalocError(f"no point could be evaluated; first: {first['id']}: {first['error']}", file=space.path,
                         key="codesign_space", fix="see points/*/result.json for each point's error")


def _rows(results: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if r["status"] not in ("ok", "infeasible"):
            continue
        for m in methods:
            a = r["allocations"].get(m) or {}
            if "energy_pJ" not in a:
                continue
            rows.append({"id": r["id"], "index": r["index"], "method": m, **{f"var.{k}": v for k, v in r["values"].items()},
                         "values": r["values"], "area_mm2": r["area_mm2"], "pes": r.get("pes"),
                         "energy_pJ": a["energy_pJ"], "cycles": a["cycles"], "edp": a["edp"],
                         "proxy_error": a["proxy_error"], "ranks": a["ranks"], "budget_met": a["budget_met"],
                         "original_energy_pJ": r["original"]["energy_pJ"], "original_cycles": r["original"]["cycles"],
                         "energy_source": r.get("energy_source"), "area_source": r.get("area_source"),
                         "table": r.get("table"), "pareto": False, "top1": None})
    return rows


def _mark_pareto(rows: list[dict[str, Any]]) -> None:
    from haloc_hw.report.runs import pareto_indices

    for r in rows:
        r["pareto"] = False
    for i in pareto_indices([[r[k] for k in OBJECTIVES] for r in rows], maximise=[False] * len(OBJECTIVES)):
        rows[i]["pareto"] = True


def _reference(space: DesignSpace, points: Sequence[Point], rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Whether the space's reference point is on the front; if not, the row that dominates it by most."""
    if space.reference is None:
        return None
    p = find_point(points, space.reference)
    if p is None:
        return {"values": space.reference, "status": "not in the space (removed by a constraint?)"}
    mine = [r for r in rows if r["id"] == p.id]
    if not mine:
        return {"id": p.id, "values": p.values, "status": "not evaluated (over area or failed)"}
    out: dict[str, Any] = {"id": p.id, "values": p.values, "status": "on the front" if any(r["pareto"] for r in mine)
                           else "dominated", "rows": []}
    for ref in mine:
        entry: dict[str, Any] = {"method": ref["method"], "pareto": ref["pareto"]}
        doms = [r for r in rows if all(r[k] <= ref[k] for k in OBJECTIVES) and any(r[k] < ref[k] for k in OBJECTIVES)]
        if doms:
            # the dominating row with the largest saving: least geometric mean of its ratios to the reference
            def score(r: dict[str, Any]) -> float:
                return math.prod((r[k] / ref[k]) if ref[k] else 1.0 for k in OBJECTIVES) ** (1 / len(OBJECTIVES))

            best = min(doms, key=lambda r: (score(r), r["id"], r["method"]))
            entry.update(dominated_by=len(doms), best={"id": best["id"], "method": best["method"], "values": best["values"],
                                                       **{f"{k}_ratio": (best[k] / ref[k] if ref[k] else None)
                                                          for k in OBJECTIVES}})
        out["rows"].append(entry)
    return out


def _run_haloc(cfg: CodesignConfig, data: Any, model: Any, rows: Sequence[dict[str, Any]], out: Path,
               echo: Callable[[str], None]) -> dict[str, Any]:
    """HALOC search + fine-tuning on the ``cfg.haloc_candidates`` Pareto points of least EDP."""
    from haloc_hw.codesign import stages

    chosen: list[dict[str, Any]] = []
    for r in sorted((r for r in rows if r["pareto"]), key=lambda r: (r["edp"], r["id"], r["method"])):
        if len(chosen) >= cfg.haloc_candidates:
            break
        if r["id"] not in {c["id"] for c in chosen}:
            chosen.append(r)
    runs: dict[str, Any] = {}
    for r in chosen:
        run_dir = out / "haloc" / r["id"]
        echo(f"HALOC search on {r['id']} ({', '.join(f'{k}={v}' for k, v in r['values'].items())}) into {run_dir}")
        metrics = stages.haloc_search(cfg, data, model, Path(r["table"]), run_dir)
        tc = metrics.get("table_cost", {})
        runs[r["id"]] = {"run_dir": str(run_dir), "top1": metrics["top1"]["compressed"],
                         "top1_original": metrics["top1"]["original"],
                         "energy_pJ": tc.get("energy_pJ", {}).get("compressed"),
                         "cycles": tc.get("cycles", {}).get("compressed"),
                         "ranks": {n: v["rank"] for n, v in metrics.get("layers", {}).items() if v.get("rank")},
                         "layers": metrics.get("layers", {})}
    return runs


def _haloc_rows(rows: Sequence[dict[str, Any]], haloc: dict[str, Any], prep: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per HALOC run (method ``haloc``): its own ranks' table costs, proxy and measured top-1."""
    from haloc_hw.codesign.evaluate import proxy_error_of
    from haloc_hw.cost.metric import EDP

    out = []
    for pid, run in haloc.items():
        like = next(r for r in rows if r["id"] == pid)
        ranks = {n: (int(a), int(b)) for n, (a, b) in run["ranks"].items()}
        energy, cycles = run["energy_pJ"], run["cycles"]
        out.append({**like, "method": "haloc", "energy_pJ": energy, "cycles": cycles,
                    "edp": None if energy is None or cycles is None else EDP.combine([energy, cycles]),
                    "proxy_error": proxy_error_of(ranks, prep["errors"], prep["weight_norms"]),
                    "ranks": {n: list(r) for n, r in ranks.items()}, "pareto": False, "top1": run["top1"],
                    "top1_haloc": run["top1"], "run_dir": run["run_dir"]})
    return out


def _stats(results: Sequence[dict[str, Any]], evaluated: int, eval_seconds: float, seconds: float) -> dict[str, Any]:
    entries = sum(r.get("cache", {}).get("entries", 0) for r in results)
    hits = sum(r.get("cache", {}).get("cache_hits", 0) for r in results)
    slots = sum(r.get("cache", {}).get("slots", 0) for r in results)
    status: dict[str, int] = {}
    for r in results:
        status[r["status"]] = status.get(r["status"], 0) + 1
    return {"points": len(results), "evaluated_now": evaluated, "status": status, "eval_seconds": eval_seconds,
            "seconds": seconds, "points_per_second": evaluated / eval_seconds if evaluated and eval_seconds > 0 else 0.0,
            "table_slots": slots, "table_entries": entries, "cache_hits": hits,
            # a slot is free when it shares an entry inside its table or finds it already cached
            "cache_hit_rate": (slots - entries + hits) / slots if slots else 0.0,
            "evaluated_entries": sum(r.get("cache", {}).get("evaluated", 0) for r in results)}


CSV_FIXED = ("id", "method", "pareto", "area_mm2", "pes", "energy_pJ", "cycles", "edp", "proxy_error", "top1_haloc",
             "original_energy_pJ", "original_cycles", "budget_met", "energy_source", "area_source")


def _csv(rows: Sequence[dict[str, Any]], var_names: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*CSV_FIXED[:2], *var_names, *CSV_FIXED[2:], "ranks"])
    for r in rows:
        w.writerow([r["id"], r["method"], *[r["values"].get(v) for v in var_names],
                    *[r.get(k) for k in CSV_FIXED[2:]],
                    ";".join(f"{n}={a}x{b}" for n, (a, b) in r["ranks"].items())])
    return buf.getvalue()


def _write(out: Path, space: DesignSpace, cfg: CodesignConfig, results: Sequence[dict[str, Any]],
           rows: Sequence[dict[str, Any]], reference: dict[str, Any] | None, haloc: dict[str, Any],
           stats: dict[str, Any], base_info: dict[str, Any]) -> dict[str, Path]:
    from haloc_hw.codesign.report import write_html

    names = list(space.variables)
    files = {"points": out / "points.csv", "pareto": out / "pareto.csv", "json": out / "codesign.json"}
    write_text_atomic(files["points"], _csv(rows, names))
    write_text_atomic(files["pareto"], _csv([r for r in rows if r["pareto"]], names))
    write_json_atomic(files["json"], {
        "space": space.name, "variables": {k: list(v) for k, v in space.variables.items()},
        "constraints": list(space.constraints), "area_limit_mm2": space.area_limit_mm2,
        "config": cfg.to_dict(), "base": base_info, "objectives": {k: "min" for k in OBJECTIVES},
        "points": [{k: v for k, v in r.items()} for r in results],
        "rows": [{k: v for k, v in r.items() if not k.startswith("var.")} for r in rows],
        "pareto": [{"id": r["id"], "method": r["method"], "values": r["values"]} for r in rows if r["pareto"]],
        "reference": reference, "haloc": {k: {kk: vv for kk, vv in v.items() if kk != "layers"} for k, v in haloc.items()},
        "stats": stats,
    })
    if cfg.html:
        files["html"] = write_html(out / "report.html", space, rows, reference, haloc, stats)
    return files
