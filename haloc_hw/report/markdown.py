"""``report.md`` (and ``report.html``) comparing run folders: a Table-1-style comparison and the plots.

:func:`write_report` reads the runs, checks that they are of one model and dataset (or, with
``group=True``, writes one section per (model, dataset)), draws the PNGs of
:mod:`haloc_hw.report.plots` into the output folder and writes the document. The document
is built once as a list of blocks (headings, paragraphs, tables, images) and rendered to
Markdown and, when asked, to an HTML page (:mod:`haloc_hw.report.page`) that links the same
PNGs. ``haloc-hw report html`` (:mod:`haloc_hw.report.run_page`) embeds them instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.fileio import write_text_atomic
from haloc_hw.report import plots
from haloc_hw.report.page import Block, render_html
from haloc_hw.report.runs import RunRecord, group_runs, load_runs, pareto_indices

log = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_HTML = "report.html"


@dataclass
class ReportResult:
    markdown: Path
    html: Path | None
    images: list[Path]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    factor, unit = plots.unit_for(metric, [value])
    return f"{value / factor:.3g} {unit}".strip()


def comparison_rows(runs: Sequence[RunRecord]) -> list[list[str]]:
    """The comparison table (header first): accuracy and the reduction of every cost, per run.

    Reductions are ``1 - compressed / original`` of each run's own original model; cycles,
    energy and latency come from the run's cost table (so from its arch), FLOPs (MACs) and
    parameters from the model.
    """
    header = ["run", "method", "arch", "budget", "top-1 base [%]", "top-1 [%]", "Δ top-1",
              "FLOPs ↓", "params ↓", "cycles ↓", "energy ↓", "latency", "latency ↓"]
    rows = [header]
    for run in runs:
        base, top1 = run.top1("original"), run.top1()
        delta = None if base is None or top1 is None else top1 - base
        rows.append([
            run.name, run.method, run.arch, run.budget_text,
            "-" if base is None else f"{base:.2f}", "-" if top1 is None else f"{top1:.2f}",
            "-" if delta is None else f"{delta:+.2f}",
            _pct(run.reduction("macs")), _pct(run.reduction("params")), _pct(run.reduction("cycles")),
            _pct(run.reduction("energy_pJ")), _fmt(run.cost("latency_s"), "latency_s"),
            _pct(run.reduction("latency_s")),
        ])
    # drop columns nobody has a value for (latency without a clock or GPU table)
    keep = [i for i in range(len(header)) if i < 7 or any(r[i] != "-" for r in rows[1:])]
    return [[r[i] for i in keep] for r in rows]


def _ranks_rows(runs: Sequence[RunRecord]) -> list[list[str]]:
    layers: list[str] = []
    for run in runs:
        layers += [n for n in run.layer_ranks if n not in layers]
    rows = [["layer", *[r.name for r in runs]]]
    for name in layers:
        cells = []
        for run in runs:
            rank = run.layer_ranks.get(name)
            cells.append("-" if rank is None else (f"{rank[0]}" if rank[0] == rank[1] else f"{rank[0]}x{rank[1]}"))
        rows.append([name, *cells])
    return rows


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "group"


def section_blocks(runs: list[RunRecord], out: Path, prefix: str) -> tuple[list[Block], list[Path]]:
    """The comparison of one (model, dataset) group: its blocks, and the PNGs written into ``out`` (names start with ``prefix``)."""
    blocks: list[Block] = []
    images: list[Path] = []

    def image(path: Path | None, caption: str) -> None:
        if path is not None:
            images.append(path)
            blocks.append(Block("image", text=caption, image=path.name))

    blocks.append(Block("heading", "Comparison", level=2))
    blocks.append(Block("text", "Reductions are 1 − compressed / original against each run's own uncompressed "
                        "model. FLOPs (multiply-accumulates) and parameters are counted on the model; cycles, "
                        "energy and latency are the cost table's totals for the run's architecture."))
    blocks.append(Block("table", rows=comparison_rows(runs)))
    points = [(r.cost("energy_pJ"), r.cost("cycles"), r.top1()) for r in runs]
    front = pareto_indices(points, maximise=(False, False, True))
    if front:
        blocks.append(Block("text", "Pareto set (top-1 up, energy and cycles down): "
                            + ", ".join(runs[i].name for i in front) + "."))
    blocks.append(Block("heading", "Accuracy vs cost", level=2))
    image(plots.plot_accuracy_vs_cost(runs, out / f"{prefix}accuracy_vs_cost.png"),
          "Top-1 against each cost; the dashed line is the Pareto front of the runs, the star the original model.")
    blocks.append(Block("heading", "Chosen ranks", level=2))
    image(plots.plot_ranks(runs, out / f"{prefix}ranks.png"), "Tucker-2 rank chosen for every decomposed layer.")
    blocks.append(Block("table", rows=_ranks_rows(runs)))
    blocks.append(Block("heading", "Per-layer cost", level=2))
    by_arch: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_arch.setdefault(run.arch, []).append(run)
    for arch, arch_runs in by_arch.items():
        for metric in ("energy_pJ", "cycles", "latency_s"):
            name = f"{prefix}layer_{metric}" + (f"_{_slug(arch)}" if len(by_arch) > 1 else "") + ".png"
            image(plots.plot_layer_costs(arch_runs, out / name, metric),
                  f"Per-layer {plots.UNITS[metric][0]} on {arch}: original layer vs each run's Tucker-2 triple.")
    searched = [r for r in runs if r.search_history and r.search_history.get("epochs")]
    if searched:
        blocks.append(Block("heading", "Search: evolution of p", level=2))
        for run in searched:
            image(plots.plot_p_evolution(run, out / f"{prefix}p_{_slug(run.name)}.png"),
                  f"Probability of every rank candidate after each search epoch ({run.name}); "
                  "the thick line is the rank finally chosen.")
    if any(r.train_history for r in runs):
        blocks.append(Block("heading", "Fine-tuning", level=2))
        image(plots.plot_training(runs, out / f"{prefix}training.png"), "Test top-1 and training loss per fine-tuning epoch.")
    blocks.append(Block("heading", "Runs", level=2))
    rows = [["run", "folder", "model", "data", "backend", "budget", "note"]]
    for run in runs:
        rows.append([run.name, str(run.path), run.model, run.data, run.backend, run.budget_text,
                     str((run.metrics.get("budget") or {}).get("note", ""))])
    blocks.append(Block("table", rows=rows))
    return blocks, images


def build_document(runs: Sequence[RunRecord], out: Path, *, group: bool = False,
                   title: str = "haloc-hw report") -> tuple[list[Block], list[Path]]:
    """All blocks and images of a report on ``runs`` (plots are written into ``out``)."""
    groups = group_runs(runs, allow_mixed=group)
    blocks = [Block("heading", title, level=1)]
    images: list[Path] = []
    if len(groups) == 1:
        (model, data), members = next(iter(groups.items()))
        blocks.append(Block("text", f"{len(members)} run(s) of {model} on {data}."))
        section, imgs = section_blocks(members, out, "")
        blocks += section
        images += imgs
    else:
        blocks.append(Block("text", f"{len(runs)} runs in {len(groups)} groups of (model, dataset); "
                            "runs are compared only within a group."))
        for (model, data), members in groups.items():
            blocks.append(Block("heading", f"{model} on {data}", level=2))
            section, imgs = section_blocks(members, out, f"{_slug(model)}_{_slug(data)}_")
            for b in section:
                if b.kind == "heading":
                    b.level += 1
            blocks += section
            images += imgs
    return blocks, images


def render_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            lines += ["#" * b.level + " " + b.text, ""]
        elif b.kind == "text":
            lines += [b.text, ""]
        elif b.kind == "image":
            lines += [f"![{b.text}]({b.image})", "", f"*{b.text}*", ""]
        elif b.kind == "pre":
            lines += ["```", b.text, "```", ""]
        elif b.kind == "table":
            def cell(v: str) -> str:
                return str(v).replace("|", "\\|").replace("\n", " ")

            lines.append("| " + " | ".join(cell(v) for v in b.rows[0]) + " |")
            lines.append("|" + "|".join("---" for _ in b.rows[0]) + "|")
            lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in b.rows[1:]]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_report(run_dirs: Sequence[str | Path] | Sequence[RunRecord], out: str | Path, *, html_page: bool = False,
                 group: bool = False, title: str = "haloc-hw report") -> ReportResult:
    """Write ``out/report.md`` (and ``out/report.html`` when ``html_page``) with its PNGs."""
    out = Path(out)
    if run_dirs and all(isinstance(r, RunRecord) for r in run_dirs):
        runs = list(run_dirs)  # type: ignore[arg-type]
    else:
        runs = load_runs([r.path if isinstance(r, RunRecord) else Path(r) for r in run_dirs])
    group_runs(runs, allow_mixed=group)  # refuse mixed runs before any file is written
    out.mkdir(parents=True, exist_ok=True)
    blocks, images = build_document(runs, out, group=group, title=title)
    md_path = out / REPORT_MD
    write_text_atomic(md_path, render_markdown(blocks))
    html_path = None
    if html_page:
        html_path = out / REPORT_HTML
        write_text_atomic(html_path, render_html(blocks, title))
    return ReportResult(md_path, html_path, images)


__all__ = ["Block", "ReportResult", "build_document", "comparison_rows", "render_html",
           "render_markdown", "section_blocks", "write_report"]
