"""Co-exploration over PE arrays: the same model and budget on several architectures and methods.

For every architecture the sweep builds one cost table (``DIR/tables/ARCH.sqlite``), then
runs the HALOC search and/or the baselines with that table into ``DIR/ARCH/METHOD/``, all
from one base model (``--base``, or one short training run in ``DIR/base``). Each run is an
ordinary ``haloc-hw search`` / ``haloc-hw baseline`` run folder, so a finished run is reused
when the sweep is started again.

An architecture that cannot map a layer of the model (its table has no cost for the
original layer) is reported with those layers and skipped; candidates it cannot map are
left out of that architecture's search, as in any table. A run that fails with a
:class:`HalocError` (say a budget below what the ranks reach on one array) is reported and
the sweep goes on.

The result is the Pareto set of (architecture, ranks) over top-1 (up) and the table totals
of energy and cycles (down; latency instead when the tables hold only latency):
``sweep.json``, ``sweep.md`` (a table, the set marked), ``sweep.png`` and a full comparison
report of every run in ``DIR/report/``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from haloc_hw.errors import HalocError
from haloc_hw.fileio import write_json_atomic, write_text_atomic
from haloc_hw.runfolder import RunFolder
from haloc_hw.settings import RunConfig

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("haloc", "uniform", "vbmf", "greedy")
DEFAULT_ARCHS: tuple[str, ...] = ("arch/eyeriss.yaml", "arch/eyeriss_16x16.yaml")
OBJECTIVE_COSTS: tuple[str, ...] = ("energy_pJ", "cycles")


@dataclass
class SweepEntry:
    """One (architecture, method) run of the sweep."""

    arch: str
    arch_path: str
    method: str
    run_dir: str
    status: str  # ok | failed | unmappable
    error: str = ""
    top1: float | None = None
    top1_original: float | None = None
    energy_pJ: float | None = None
    cycles: float | None = None
    latency_s: float | None = None
    macs: float | None = None
    ratio: float | None = None
    ranks: dict[str, list[int]] = field(default_factory=dict)
    pareto: bool = False


@dataclass
class ArchStatus:
    arch: str
    path: str
    table: str | None
    mappable: bool
    unmappable_layers: list[str] = field(default_factory=list)
    missing_candidates: dict[str, int] = field(default_factory=dict)
    error: str = ""


@dataclass
class SweepResult:
    out: Path
    entries: list[SweepEntry]
    archs: list[ArchStatus]
    objectives: list[str]
    files: dict[str, Path]

    @property
    def pareto(self) -> list[SweepEntry]:
        return [e for e in self.entries if e.pareto]


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"haloc,uniform"`` -> ``["haloc", "uniform"]``; unknown names raise :class:`HalocError`."""
    items = text.split(",") if isinstance(text, str) else [m for part in text for m in part.split(",")]
    methods = [m.strip().lower() for m in items if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise HalocError(f"unknown method(s) {', '.join(bad) or '(none given)'}", key="--methods",
                         fix=f"use a comma-separated subset of {','.join(METHODS)}")
    return list(dict.fromkeys(methods))


def arch_names(paths: Sequence[str]) -> list[str]:
    """Short unique names of the archs (file stems; the parent folder is added when stems repeat)."""
    stems = [Path(p).stem for p in paths]
    out = []
    for p, s in zip(paths, stems):
        out.append(s if stems.count(s) == 1 else f"{Path(p).parent.name}_{s}")
    if len(set(out)) != len(out):
        raise HalocError("the same architecture is given twice", key="--arch", fix="give each --arch once")
    return out


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the run template (its ``cost.arch`` lists every architecture), the methods, the report."""

    run: RunConfig
    methods: tuple[str, ...] = ("haloc",)
    html: bool = False

    @property
    def out(self) -> Path:
        return self.run.out

    @property
    def archs(self) -> tuple[str, ...]:
        return self.run.cost.arch or DEFAULT_ARCHS


# ---------------------------------------------------------------------------------------
# tables


def build_arch_table(cfg: RunConfig, arch: str, layers: Sequence[Any], data: Any, path: Path) -> tuple[Any, ArchStatus]:
    """Build (or reuse) the cost table of ``layers`` on ``arch`` and check that every layer maps.

    Built like ``haloc-hw search`` builds its table, but failed evaluations do not stop the
    build: they tell which layers (or candidates) the architecture cannot map.
    """
    from haloc_hw.cost.build import build_cost_table, candidates_of, resolve_arch
    from haloc_hw.pipeline import table_target

    name = path.stem
    arch_path = resolve_arch(cfg.cost, arch)
    table = build_cost_table(table_target(cfg, data), cfg.cost, arch_path, path, layers=layers, strict=False,
                             progress=cfg.progress)
    status = ArchStatus(arch=name, path=str(arch), table=str(path), mappable=True)
    full = candidates_of(cfg.cost, layers)
    for info in layers:
        try:
            table.entry(info.name, "original")
        except HalocError:
            status.unmappable_layers.append(info.name)
            continue
        if info.decomposable:
            lost = len(full.get(info.name, [])) - len(table.candidates(info.name))
            if lost:
                status.missing_candidates[info.name] = lost
    if status.unmappable_layers:
        status.mappable = False
        status.error = f"cannot map layer(s) {', '.join(status.unmappable_layers)}"
    return table, status


# ---------------------------------------------------------------------------------------
# runs


Runner = Callable[[RunConfig], Any]


def _summarise(entry: SweepEntry) -> None:
    run = RunFolder(Path(entry.run_dir)).load()
    entry.top1, entry.top1_original = run.top1(), run.top1("original")
    entry.energy_pJ, entry.cycles, entry.latency_s = run.cost("energy_pJ"), run.cost("cycles"), run.cost("latency_s")
    entry.macs = run.cost("macs")
    entry.ratio = run.ranks.get("ratio")
    entry.ranks = {n: list(r) for n, r in run.layer_ranks.items()}


def _default_runner(cfg: RunConfig, echo: Callable[[str], None]) -> Any:
    from haloc_hw import pipeline

    if cfg.command == "search":
        return pipeline.run_search(cfg, echo=echo)
    return pipeline.run_baseline(cfg, cfg.method, echo=echo)


def run_sweep(cfg: SweepConfig, *, runner: Runner | None = None,
              echo: Callable[[str], None] = log.info) -> SweepResult:
    """Run the sweep ``cfg`` (see the module docstring).

    Each run is a :class:`RunConfig` made from the template and handed to ``runner``
    (default :func:`haloc_hw.pipeline.run_search` / :func:`~haloc_hw.pipeline.run_baseline`).
    Progress messages go to ``echo`` (the module logger by default; the CLI passes ``print``).
    """
    from dataclasses import replace

    from haloc_hw import pipeline
    from haloc_hw.search.search import CHECKPOINT_NAME
    from haloc_hw.train import seed_everything
    from haloc_hw.workload import extract_shapes

    template = cfg.run
    out = cfg.out
    archs = list(cfg.archs)
    names = arch_names(archs)
    methods = parse_methods(list(cfg.methods))
    RunFolder(out).check_writable()
    for value, key in ((template.cost.jobs, "--jobs"), (template.cost.step, "--step"), (template.data.subset, "--subset")):
        if value is not None and value < 1:
            raise HalocError(f"{key} must be at least 1, got {value}", key=key, fix=f"pass a positive {key} or leave it out")
    out.mkdir(parents=True, exist_ok=True)
    run = runner or (lambda c: _default_runner(c, echo))

    seed_everything(template.data.seed)
    data = pipeline.prepare_data(template.data, echo=echo)
    base_cfg = replace(template, cost=replace(template.cost, arch=(archs[0],), path=None))
    loaded = pipeline.load_base(base_cfg, data, echo=echo)
    model, base_info = loaded if loaded is not None else pipeline.train_base(base_cfg, data, echo=echo)
    base_path = Path(base_info["path"])
    layers = extract_shapes(model, data.input_size, 1)

    entries: list[SweepEntry] = []
    statuses: list[ArchStatus] = []
    for arch, name in zip(archs, names):
        table_path = out / "tables" / f"{name}.sqlite"
        try:
            _, status = build_arch_table(template, arch, layers, data, table_path)
        except HalocError as err:
            status = ArchStatus(arch=name, path=arch, table=None, mappable=False, error=err.message)
        statuses.append(status)
        if not status.mappable:
            echo(f"{name}: skipped, {status.error}")
            entries += [SweepEntry(name, arch, m, str(out / name / m), "unmappable", status.error) for m in methods]
            continue
        if status.missing_candidates:
            echo(f"{name}: candidates it cannot map are left out: "
                  + ", ".join(f"{n} ({k})" for n, k in status.missing_candidates.items()))
        for method in methods:
            folder = RunFolder(out / name / method)
            entry = SweepEntry(name, arch, method, str(folder.path), "ok")
            entries.append(entry)
            if folder.is_finished():
                echo(f"{name}/{method}: reusing the finished run in {folder.path}")
            else:
                command = "search" if method == "haloc" else "baseline"
                run_cfg = replace(template, command=command, out=folder.path,
                                  cost=replace(template.cost, arch=(arch,), path=str(table_path)),
                                  base_model=str(base_path), method=None if command == "search" else method,
                                  search=template.search if command == "search" else None,
                                  # an interrupted search continues from its checkpoint
                                  resume=command == "search" and (folder.path / CHECKPOINT_NAME).exists())
                echo(f"{name}/{method}: running {command} into {folder.path}")
                try:
                    run(run_cfg)
                except HalocError as err:
                    entry.status, entry.error = "failed", str(err)
                    echo(f"{name}/{method}: failed: {err}")
                    continue
            _summarise(entry)
    return finish_sweep(out, entries, statuses, model=template.model, methods=methods, metric=template.budget.metric,
                        budget_text=template.budget.text, html=cfg.html)


# ---------------------------------------------------------------------------------------
# results


def mark_pareto(entries: Sequence[SweepEntry]) -> list[str]:
    """Set ``pareto`` on the non-dominated finished runs; returns the cost objectives used."""
    from haloc_hw.report.runs import pareto_indices

    ok = [e for e in entries if e.status == "ok"]
    costs = [c for c in OBJECTIVE_COSTS if ok and all(getattr(e, c) is not None for e in ok)]
    if not costs and ok and all(e.latency_s is not None for e in ok):
        costs = ["latency_s"]
    points = [(e.top1, *[getattr(e, c) for c in costs]) for e in ok]
    for i in pareto_indices(points, maximise=(True, *[False] * len(costs))):
        ok[i].pareto = True
    return costs


def _markdown(entries: Sequence[SweepEntry], statuses: Sequence[ArchStatus], objectives: Sequence[str], *,
              model: str, metric: str, budget_text: str) -> str:
    from haloc_hw.report.plots import unit_for

    def fmt(value: float | None, key: str) -> str:
        if value is None:
            return "-"
        factor, unit = unit_for(key, [value])
        return f"{value / factor:.4g} {unit}".strip()

    lines = [f"# Sweep: {model}, budget {budget_text} of {metric}", "",
             f"Pareto set over top-1 (up) and {', '.join(objectives) or '-'} (down) is marked ★. Costs are the cost "
             "table totals of each architecture; ratio is the searched metric relative to the original model on "
             "the same architecture.", "",
             "| arch | method | Pareto | top-1 [%] | base top-1 [%] | energy | cycles | latency | FLOPs | ratio | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        status = e.status if not e.error else f"{e.status}: {e.error}".replace("|", "/")
        lines.append(f"| {e.arch} | {e.method} | {'★' if e.pareto else ''} | "
                     f"{'-' if e.top1 is None else f'{e.top1:.2f}'} | "
                     f"{'-' if e.top1_original is None else f'{e.top1_original:.2f}'} | {fmt(e.energy_pJ, 'energy_pJ')} | "
                     f"{fmt(e.cycles, 'cycles')} | {fmt(e.latency_s, 'latency_s')} | {fmt(e.macs, 'macs')} | "
                     f"{'-' if e.ratio is None else f'{e.ratio:.3f}'} | {status} |")
    lines.append("")
    bad = [s for s in statuses if not s.mappable]
    if bad:
        lines += ["## Architectures skipped", ""]
        lines += [f"- {s.arch} ({s.path}): {s.error}" for s in bad]
        lines.append("")
    partial = [s for s in statuses if s.mappable and s.missing_candidates]
    if partial:
        lines += ["## Candidates an architecture cannot map (left out of its runs)", ""]
        lines += [f"- {s.arch}: " + ", ".join(f"{n} ({k})" for n, k in s.missing_candidates.items()) for s in partial]
        lines.append("")
    lines += ["![top-1 against energy and cycles per architecture and method](sweep.png)", "",
              "Per-run plots and the full comparison: [report/report.md](report/report.md).", ""]
    return "\n".join(lines)


def plot_sweep(entries: Sequence[SweepEntry], objectives: Sequence[str], path: Path) -> Path | None:
    """Top-1 against each cost objective; colour = architecture, marker = method, Pareto set circled."""
    from haloc_hw.report.plots import MARKERS, _colors, _figure, _save, axis_label, unit_for

    ok = [e for e in entries if e.status == "ok" and e.top1 is not None]
    if not ok or not objectives:
        return None
    archs = list(dict.fromkeys(e.arch for e in ok))
    methods = list(dict.fromkeys(e.method for e in ok))
    colors = dict(zip(archs, _colors(len(archs))))
    fig = _figure(4.6 * len(objectives), 4.0)
    axes = fig.subplots(1, len(objectives), squeeze=False)[0]
    handles: dict[str, Any] = {}
    rings: dict[str, Any] = {}
    for ax, key in zip(axes, objectives):
        factor, unit = unit_for(key, [getattr(e, key) for e in ok if getattr(e, key) is not None])
        for e in ok:
            x = getattr(e, key)
            if x is None:
                continue
            h = ax.scatter([x / factor], [e.top1], color=colors[e.arch], marker=MARKERS[methods.index(e.method) % len(MARKERS)],
                           s=46, zorder=3)
            handles.setdefault(f"{e.arch} / {e.method}", h)
            if e.pareto:
                ring = ax.scatter([x / factor], [e.top1], s=190, facecolors="none", edgecolors="black", linewidths=1.2,
                                  zorder=4)
                rings.setdefault(f"Pareto set (top-1, {', '.join(objectives)})", ring)
        ax.set_xlabel(axis_label(key, unit))
        ax.set_ylabel("top-1 [%]")
        ax.set_title(f"accuracy vs {axis_label(key, unit).split(' [')[0]}")
        ax.grid(alpha=0.3)
    handles.update(rings)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncols=min(4, len(handles)), fontsize=8)
    fig.suptitle("Sweep over PE arrays: colour = architecture, marker = method")
    return _save(fig, path)


def finish_sweep(out: Path, entries: list[SweepEntry], statuses: list[ArchStatus], *, model: str,
                 methods: Sequence[str], metric: str, budget_text: str, html: bool = False) -> SweepResult:
    """Mark the Pareto set and write ``sweep.json``, ``sweep.md``, ``sweep.png`` and ``report/``."""
    from haloc_hw.report.markdown import write_report

    objectives = mark_pareto(entries)
    files: dict[str, Path] = {}
    png = plot_sweep(entries, objectives, out / "sweep.png")
    if png is not None:
        files["plot"] = png
    ok_dirs = [e.run_dir for e in entries if e.status == "ok"]
    if ok_dirs:
        files["report"] = write_report(ok_dirs, out / "report", html_page=html, title=f"haloc-hw sweep: {model}").markdown
    payload = {
        "model": model, "methods": list(methods), "metric": metric, "budget": budget_text,
        "objectives": {"top1": "max", **{c: "min" for c in objectives}},
        "archs": [asdict(s) for s in statuses],
        "entries": [asdict(e) for e in entries],
        "pareto": [{"arch": e.arch, "method": e.method, "run_dir": e.run_dir, "ranks": e.ranks} for e in entries if e.pareto],
    }
    write_json_atomic(out / "sweep.json", payload)
    files["json"] = out / "sweep.json"
    write_text_atomic(out / "sweep.md", _markdown(entries, statuses, objectives, model=model, metric=metric,
                                                  budget_text=budget_text))
    files["markdown"] = out / "sweep.md"
    return SweepResult(out, entries, statuses, objectives, files)
