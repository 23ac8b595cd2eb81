"""``haloc-hw report KIND``: plots and tables people read, built from cost tables and search results.

Each report kind is one sub-command. To add one, write ``_add_NAME(subparsers)`` that adds
its parser and sets ``func``, and list it in :data:`REPORTS`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from haloc_hw.errors import HalocError


def _add_heatmap(sub: argparse._SubParsersAction) -> None:
    from haloc_hw.cost.metric import METRICS

    p = sub.add_parser(
        "heatmap",
        help="one layer's cost over its Tucker-2 ranks (r1, r2), the original layer's cost marked",
        description="Heat map of a layer's cost over (r1, r2) with the original layer's cost marked "
        "(a line chart over r1 = r2 when the table holds only equal ranks).",
    )
    p.add_argument("--table", required=True, type=Path, metavar="FILE", help="cost table (.sqlite) from 'haloc-hw tables'")
    p.add_argument("--layer", required=True, metavar="NAME", help="layer name as in the table, e.g. layer3.0.conv2")
    p.add_argument("--metric", default=None, choices=METRICS,
                   help="what to plot (default: latency_s for a GPU table, else energy_pJ)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="image to write (.png, .pdf or .svg)")
    p.set_defaults(func=_run_heatmap)


def _run_heatmap(args: argparse.Namespace) -> int:
    from haloc_hw.report.heatmap import plot_table_layer

    if not args.table.is_file():
        raise HalocError("cost table not found", file=args.table, key="--table", fix="build it with 'haloc-hw tables ... --out DIR'")
    result = plot_table_layer(args.table, args.layer, args.out, metric=args.metric)
    what = "heat map" if result.kind == "heatmap" else "line chart over r1 = r2 (the table holds only equal ranks)"
    r1, r2 = result.best
    print(f"wrote {result.path}: {what}, {result.cells} candidates")
    if result.original is not None:
        print(f"best ({r1}, {r2}): {result.best_value:.6g} {result.metric}, {result.best_value / result.original:.3f}x the original layer ({result.original:.6g})")
    return 0


def _add_runs(sub: argparse._SubParsersAction) -> None:
    """Add ``report runs`` to the ``haloc-hw report`` sub-commands."""
    p = sub.add_parser(
        "runs", help="compare run folders: report.md (+ html) with a Table-1-style comparison and plots",
        description="Compare search and baseline run folders of one model and dataset: accuracy, FLOPs, params, "
        "cycles, energy and latency reductions, chosen ranks, p during the search, fine-tuning curves, "
        "accuracy vs cost with the Pareto front, and per-layer costs.",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders (config.yaml, ranks.json, metrics.json)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for report.md and the PNGs")
    p.add_argument("--html", action="store_true", help="also write report.html")
    p.add_argument("--group", action="store_true",
                   help="runs of several models/datasets: one section per (model, dataset) instead of an error")
    p.add_argument("--title", default="haloc-hw report", help="report title")
    p.set_defaults(func=_run_runs)


def _run_runs(args: argparse.Namespace) -> int:
    from haloc_hw.report.markdown import write_report

    result = write_report(args.runs, args.out, html_page=args.html, group=args.group, title=args.title)
    print(f"wrote {result.markdown}" + (f" and {result.html}" if result.html else "") + f" with {len(result.images)} plot(s)")
    return 0


def _add_html(sub: argparse._SubParsersAction) -> None:
    """Add ``report html`` to the ``haloc-hw report`` sub-commands."""
    p = sub.add_parser(
        "html", help="one self-contained HTML page of a finished run or sweep folder",
        description="One HTML page (plots embedded, no other files) of a finished search, baseline or sweep "
        "folder: final metrics, the chosen rank of every layer, per-layer energy and cycles before and after "
        "compression from the run's cost table, p over the search epochs and the fine-tuning curve.",
    )
    p.add_argument("folder", type=Path, metavar="RUN_DIR", help="run folder (search or baseline) or sweep folder")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="page to write (default: RUN_DIR/report.html)")
    p.set_defaults(func=_run_html)


def _run_html(args: argparse.Namespace) -> int:
    from haloc_hw.report.run_page import write_html_report

    result = write_html_report(args.folder, args.out)
    print(f"report: {result.path}")
    return 0


# Report kinds, in --help order.
REPORTS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_heatmap, _add_runs, _add_html)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="plots and tables from cost tables and search results", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="report", metavar="KIND")
    sub.required = True
    for add in REPORTS:
        add(sub)
