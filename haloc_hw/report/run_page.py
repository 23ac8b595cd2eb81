"""``haloc-hw report html``: one self-contained HTML page of a finished run or sweep folder.

A run page (``haloc-hw search`` or ``baseline``) shows the final metrics against the
uncompressed model, the chosen rank of every layer, each layer's energy and cycles before
and after compression (from the run's cost table, see :mod:`haloc_hw.report.layer_costs`),
the probabilities p over the search epochs and the fine-tuning curve. A sweep page
(``haloc-hw sweep``) shows the sweep's table and plot and the comparison of its runs
(:func:`haloc_hw.report.markdown.section_blocks`). The plots are the PNGs of
:mod:`haloc_hw.report.plots`, drawn into a temporary folder and embedded as ``data:`` URIs,
so the page is one file with no external assets. Nothing here imports torch.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.errors import HalocError
from haloc_hw.fileio import write_text_atomic
from haloc_hw.report import plots
from haloc_hw.report.layer_costs import LayerCosts, layer_costs
from haloc_hw.report.page import Block, embed_images, render_html
from haloc_hw.report.runs import REQUIRED_FILES, RunRecord, load_run
from haloc_hw.runfolder import RunFolder

log = logging.getLogger(__name__)

REPORT_HTML = "report.html"
SWEEP_FILE = "sweep.json"
SWEEP_PLOT = "sweep.png"


@dataclass(frozen=True)
class HtmlReport:
    """What :func:`write_html_report` wrote: ``kind`` is ``"run"`` or ``"sweep"``."""

    path: Path
    kind: str
    runs: int
    images: int


# ---------------------------------------------------------------------------------------
# formatting


def _num(value: float | None, factor: float = 1.0, digits: int = 4) -> str:
    return "-" if value is None else f"{value / factor:.{digits}g}"


def _rank(rank: Sequence[int] | None) -> str:
    if rank is None:
        return "kept"
    return f"{rank[0]}" if rank[0] == rank[1] else f"{rank[0]}x{rank[1]}"


def _unit(metric: str, values: Sequence[float | None]) -> tuple[float, str]:
    return plots.unit_for(metric, [v for v in values if v is not None])


def _header(metric: str, unit: str) -> str:
    return plots.axis_label(metric, unit)


# ---------------------------------------------------------------------------------------
# a run


def _result_rows(run: RunRecord) -> list[list[str]]:
    rows = [["quantity", "original", "compressed", "compressed / original"]]
    base, top1 = run.top1("original"), run.top1()
    rows.append(["top-1 [%]", "-" if base is None else f"{base:.2f}", "-" if top1 is None else f"{top1:.2f}",
                 "-" if base is None or top1 is None else f"{top1 - base:+.2f} points"])
    keys = list((run.metrics.get("table_cost") or {}).keys())
    ordered = [k for k in ("energy_pJ", "cycles", "latency_s", "edp") if k in keys] + \
        [k for k in keys if k not in ("energy_pJ", "cycles", "latency_s", "edp")]
    for key in ["macs", "params", *ordered]:
        orig, comp = run.cost(key, "original"), run.cost(key, "compressed")
        if orig is None and comp is None:
            continue
        factor, unit = _unit(key, [orig, comp])
        ratio = "-" if orig in (None, 0) or comp is None else f"{comp / orig:.3f}"
        source = "" if key in ("macs", "params") else " (cost table)"
        rows.append([_header(key, unit) + source, _num(orig, factor), _num(comp, factor), ratio])
    return rows


def _layer_rows(run: RunRecord, costs: LayerCosts) -> list[list[str]]:
    """One row per layer: rank, p, and before / after / ratio for every metric."""
    searched = run.ranks.get("layers") or {}
    units = {m: _unit(m, [v for layer in costs.layers for v in (layer.original.get(m), layer.compressed.get(m))])
             for m in costs.metrics}
    header = ["layer", "rank", "p", "candidates"]
    for m in costs.metrics:
        factor, unit = units[m]
        name = plots.UNITS.get(m, (m,))[0]
        header += [f"{name} before [{unit}]", f"{name} after [{unit}]", f"{name} after / before"]
    rows = [header]
    for layer in costs.layers:
        info = searched.get(layer.name) or {}
        prob = info.get("probability")
        rank = _rank(layer.rank) + ("*" if info.get("repaired") else "")
        row = [layer.name, rank, "-" if prob is None else f"{float(prob):.2f}", str(info.get("num_candidates", "-"))]
        for m in costs.metrics:
            factor = units[m][0]
            ratio = layer.ratio(m)
            row += [_num(layer.original.get(m), factor), _num(layer.compressed.get(m), factor),
                    "-" if ratio is None else f"{ratio:.3f}"]
        rows.append(row)
    return rows


def _settings_rows(run: RunRecord) -> list[list[str]]:
    """The scalar settings of ``config.yaml`` (one level of nesting spelled ``section.key``)."""
    rows = [["setting", "value"]]
    for key, value in run.config.items():
        if isinstance(value, dict):
            if key == "table":
                rows.append(["table.path", str(value.get("path", "-"))])
                continue
            rows += [[f"{key}.{k}", json.dumps(v) if isinstance(v, (list, dict)) else str(v)]
                     for k, v in value.items() if not isinstance(v, dict)]
        else:
            rows.append([key, json.dumps(value) if isinstance(value, list) else str(value)])
    return rows


def _plotted(run: RunRecord, costs: LayerCosts) -> RunRecord:
    """``run`` with the per-layer costs the page shows, so its per-layer plots draw the same numbers."""
    return replace(run, metrics={**run.metrics, "layers": costs.as_metrics_rows()}) if costs.layers else run


def run_blocks(run: RunRecord, workdir: Path) -> list[Block]:
    """The blocks of a run page; its plots are written into ``workdir`` (linked by file name)."""
    blocks = [Block("heading", f"haloc-hw run: {run.name}", level=1),
              Block("text", f"{run.method} on {run.model} ({run.data}); costs from the {run.backend} cost model "
                    f"for {run.arch}; budget {run.budget_text}. Folder: {run.path}.")]
    note = (run.metrics.get("budget") or {}).get("note")
    if note:
        blocks.append(Block("text", str(note)))

    def image(path: Path | None, caption: str) -> None:
        if path is not None:
            blocks.append(Block("image", text=caption, image=path.name))

    blocks += [Block("heading", "Result"), Block("table", rows=_result_rows(run))]

    costs = layer_costs(run)
    plotted = _plotted(run, costs)
    blocks.append(Block("heading", "Chosen ranks"))
    decomposed = sum(1 for layer in costs.layers if layer.rank is not None) if costs.layers else len(run.layer_ranks)
    total = len(costs.layers) or len(run.layer_ranks)
    blocks.append(Block("text", f"{decomposed} of {total} layers replaced by a Tucker-2 triple of the rank shown; "
                        "the others are kept. p is the search's final probability of the chosen candidate; "
                        "* marks a layer the budget repair moved to a cheaper candidate."))
    if run.layer_ranks:
        image(plots.plot_ranks([run], workdir / "ranks.png"), "Tucker-2 rank chosen for every decomposed layer.")

    blocks.append(Block("heading", "Per-layer cost before and after compression"))
    if costs.source == "table":
        blocks.append(Block("text", f"From the run's cost table {costs.table_path}: the original layer against "
                            "the Tucker-2 triple of its chosen rank."))
    elif costs.source == "metrics.json":
        blocks.append(Block("text", "From metrics.json (written from the run's cost table when the run finished; "
                            "the table file itself was not found)."))
    if costs.layers:
        blocks.append(Block("table", rows=_layer_rows(run, costs)))
        for m in costs.metrics:
            image(plots.plot_layer_costs([plotted], workdir / f"layer_{m}.png", m),
                  f"Per-layer {plots.UNITS[m][0]}: original layer (grey) and its compressed replacement.")
    else:
        blocks.append(Block("text", "The run holds no per-layer costs (no cost table and none in metrics.json)."))

    if run.search_history and run.search_history.get("epochs"):
        blocks.append(Block("heading", "Search: evolution of p"))
        epochs = len(run.search_history["epochs"])
        blocks.append(Block("text", f"{epochs} search epoch(s); p = softmax(α) of every rank candidate after each "
                            "epoch. Layers with a single candidate have nothing to choose and are left out."))
        image(plots.plot_p_evolution(run, workdir / "p.png"),
              "Probability of every rank candidate after each search epoch; the thick line is the rank chosen.")

    if run.train_history:
        blocks.append(Block("heading", "Fine-tuning"))
        last = run.train_history[-1]
        acc = last.get("test_acc")
        blocks.append(Block("text", f"{len(run.train_history)} epoch(s); last epoch: training loss "
                            f"{float(last.get('loss', float('nan'))):.4f}"
                            + ("" if acc is None else f", test top-1 {float(acc):.2f} %") + "."))
        image(plots.plot_training([run], workdir / "training.png"), "Test top-1 and training loss per fine-tuning epoch.")

    blocks += [Block("heading", "Settings"), Block("table", rows=_settings_rows(run))]
    return blocks


# ---------------------------------------------------------------------------------------
# a sweep


def _read_sweep(folder: Path) -> dict[str, Any]:
    path = folder / SWEEP_FILE
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise HalocError(f"cannot read {SWEEP_FILE} ({err.__class__.__name__})", file=path,
                         fix="re-run the same 'haloc-hw sweep' command to finish it") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("entries"), list):
        raise HalocError(f"{SWEEP_FILE} lacks entries", file=path, key="entries",
                         fix="re-run the same 'haloc-hw sweep' command to finish it")
    return payload


def _entry_dir(folder: Path, entry: dict[str, Any]) -> Path:
    given = Path(str(entry.get("run_dir", "")))
    for candidate in (given, folder / str(entry.get("arch", "")) / str(entry.get("method", ""))):
        if candidate.is_dir():
            return candidate
    return given


def sweep_blocks(folder: Path, workdir: Path) -> tuple[list[Block], int]:
    """The blocks of a sweep page and the number of runs compared; plots go into ``workdir``."""
    from haloc_hw.report.markdown import section_blocks

    payload = _read_sweep(folder)
    entries = payload["entries"]
    model = payload.get("model", "?")
    blocks = [Block("heading", f"haloc-hw sweep: {model}", level=1),
              Block("text", f"Methods {', '.join(map(str, payload.get('methods', [])))} on "
                    f"{len(payload.get('archs', []))} architecture(s); budget {payload.get('budget', '?')} of "
                    f"{payload.get('metric', '?')}. Folder: {folder}.")]
    energies = [e.get("energy_pJ") for e in entries]
    cycles = [e.get("cycles") for e in entries]
    ef, eu = _unit("energy_pJ", energies)
    cf, cu = _unit("cycles", cycles)
    rows = [["arch", "method", "status", "top-1 [%]", _header("energy_pJ", eu), _header("cycles", cu), "Pareto", "note"]]
    for e in entries:
        rows.append([str(e.get("arch")), str(e.get("method")), str(e.get("status")), _num(e.get("top1")),
                     _num(e.get("energy_pJ"), ef), _num(e.get("cycles"), cf), "yes" if e.get("pareto") else "",
                     str(e.get("error") or "")])
    blocks += [Block("heading", "Sweep"), Block("table", rows=rows)]
    if (folder / SWEEP_PLOT).is_file():
        blocks.append(Block("image", text="Accuracy against each cost; colour = architecture, marker = method, "
                            "ringed = Pareto set.", image=str((folder / SWEEP_PLOT).resolve())))
    runs = [load_run(_entry_dir(folder, e), f"{e.get('arch')}/{e.get('method')}") for e in entries
            if e.get("status") == "ok"]
    runs = [_plotted(r, layer_costs(r)) for r in runs]
    if runs:
        section, _ = section_blocks(runs, workdir, "")
        blocks += section
    return blocks, len(runs)


# ---------------------------------------------------------------------------------------


def folder_kind(folder: Path) -> str:
    """``"run"`` or ``"sweep"``; a :class:`HalocError` naming what is missing for anything else."""
    if not folder.is_dir():
        raise HalocError("folder not found", file=folder, key="RUN_DIR",
                         fix="pass a folder written by 'haloc-hw search', 'baseline' or 'sweep'")
    if (folder / SWEEP_FILE).is_file():
        return "sweep"
    run = RunFolder(folder)
    if any((folder / f).exists() for f in REQUIRED_FILES) or any(run.log_file(c).exists() for c in ("search", "baseline")):
        return "run"  # load_run names the files an unfinished run lacks
    if (folder / "tables").is_dir():
        raise HalocError(f"sweep folder lacks {SWEEP_FILE} (the sweep has not finished)", file=folder, key=SWEEP_FILE,
                         fix="re-run the same 'haloc-hw sweep' command to finish it")
    raise HalocError(f"not a run or sweep folder: it lacks {', '.join(REQUIRED_FILES)} (a run) or {SWEEP_FILE} "
                     "(a sweep)", file=folder, key="RUN_DIR",
                     fix="pass a folder written by 'haloc-hw search', 'baseline' or 'sweep'")


def write_html_report(folder: str | Path, out: str | Path | None = None) -> HtmlReport:
    """Write the page of a finished run or sweep ``folder`` to ``out`` (default ``folder/report.html``)."""
    folder = Path(folder)
    kind = folder_kind(folder)
    run = load_run(folder) if kind == "run" else None  # refuse an unfinished run before drawing anything
    out = folder / REPORT_HTML if out is None else Path(out)
    if out.is_dir():
        raise HalocError("the output is a folder", file=out, key="--out", fix="pass a file name, e.g. report.html")
    with tempfile.TemporaryDirectory(prefix="haloc-report-") as tmp:
        workdir = Path(tmp)
        if run is not None:
            blocks, runs = run_blocks(run, workdir), 1
            title = f"haloc-hw run: {run.name}"
        else:
            blocks, runs = sweep_blocks(folder, workdir)
            title = blocks[0].text
        blocks = embed_images(blocks, workdir)
    images = sum(1 for b in blocks if b.kind == "image")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, render_html(blocks, title))
    except OSError as err:
        raise HalocError(f"cannot write the report ({err.__class__.__name__}: {err.strerror or err})", file=out,
                         key="--out", fix="pass a writable file path") from None
    log.info("wrote %s (%d plots)", out, images)
    return HtmlReport(out, kind, runs, images)


__all__ = ["HtmlReport", "REPORT_HTML", "folder_kind", "run_blocks", "sweep_blocks", "write_html_report"]
