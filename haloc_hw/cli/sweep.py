"""``haloc-hw sweep``: the search and/or baselines on several PE arrays, and the Pareto set of (arch, ranks).

See :mod:`haloc_hw.sweep` for what is run and written: ``DIR/tables/ARCH.sqlite``,
``DIR/ARCH/METHOD/`` run folders, ``sweep.json``, ``sweep.md``, ``sweep.png`` and
``DIR/report/``. Options shared with ``haloc-hw search`` mean the same there.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from haloc_hw.cli.options import add_run_options, add_run_parser, add_search_options
    from haloc_hw.sweep import METHODS

    p = add_run_parser(subparsers, "sweep", doc=__doc__,
                       help="search / baselines on several architectures; Pareto set by accuracy, energy, cycles")
    add_run_options(p, arch_repeats=True)
    p.add_argument("--methods", default="haloc", metavar="LIST",
                   help=f"comma-separated subset of {','.join(METHODS)} (haloc = the search)")
    add_search_options(p)
    p.add_argument("--html", action="store_true", help="also write report/report.html")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haloc_hw.cli.options import run_config
    from haloc_hw.sweep import DEFAULT_ARCHS, SweepConfig, parse_methods, run_sweep

    template = run_config(args, "search", archs=args.arch or DEFAULT_ARCHS)
    cfg = SweepConfig(run=template, methods=tuple(parse_methods(args.methods)), html=args.html)
    result = run_sweep(cfg, echo=print)
    ok = [e for e in result.entries if e.status == "ok"]
    print(f"\n{len(ok)} of {len(result.entries)} runs finished; Pareto set over top-1 and "
          f"{', '.join(result.objectives) or '-'}:")
    for e in result.pareto:
        costs = ", ".join(f"{k} {getattr(e, k):.4g}" for k in result.objectives)
        print(f"  {e.arch} / {e.method}: top-1 {e.top1:.2f}%, {costs}  ({e.run_dir})")
    for e in result.entries:
        if e.status != "ok":
            print(f"  not run: {e.arch} / {e.method}: {e.status}: {e.error}")
    print(f"wrote {result.files['json']}, {result.files['markdown']}"
          + (f", {result.files['plot']}" if "plot" in result.files else ""))
    return 0
