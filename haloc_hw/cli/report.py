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
    p = sub.add_parser(
        "heatmap",
        help="one layer's cost over its Tucker-2 ranks (r1, r2), the original layer's cost marked",
        description="Heat map of a layer's cost over (r1, r2) with the original layer's cost marked "
        "(a line chart over r1 = r2 when the table holds only equal ranks).",
    )
    p.add_argument("--table", required=True, type=Path, metavar="FILE", help="cost table (.sqlite) from 'haloc-hw tables'")
    p.add_argument("--layer", required=True, metavar="NAME", help="layer name as in the table, e.g. layer3.0.conv2")
    p.add_argument("--metric", default="latency_s", choices=("latency_s", "energy_pJ", "cycles", "edp"),
                   help="what to plot (default latency_s)")  # fmt: skip
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
        print(f"best ({r1}, {r2}): {result.best_value:.6g} {args.metric}, {result.best_value / result.original:.3f}x the original layer ({result.original:.6g})")
    return 0


def _add_runs(sub: argparse._SubParsersAction) -> None:
    from haloc_hw.report.markdown import add_runs_parser

    add_runs_parser(sub)


# Report kinds, in --help order.
REPORTS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_heatmap, _add_runs)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="plots and tables from cost tables and search results", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="report", metavar="KIND")
    sub.required = True
    for add in REPORTS:
        add(sub)
