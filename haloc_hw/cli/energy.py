"""``haloc-hw energy FILES... [--set KEY=VALUE]... --out DIR``: energy and area without Accelergy.

Reads the file set as timeloopfe does (:func:`haloc_hw.spec.design.load_design`: any order, a Jinja2
top file, ``--set`` template variables / variable overrides), estimates every component with
:func:`haloc_hw.energy.estimate_design` (the user's own ERT/ART, if among the files, win per
component) and writes ``ERT.yaml``, ``ART.yaml``, ``energy_table.md`` and ``energy_table.csv`` into
``--out`` -- all rendered and validated before the first file is written. Never imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from haloc_hw.energy import estimate_design
    from haloc_hw.energy.writers import write_outputs
    from haloc_hw.spec.design import load_design, parse_set_values

    design = load_design(args.files, set_values=parse_set_values(args.set or []))
    est = estimate_design(design)
    paths = write_outputs(est, args.out)
    print(Path(args.out))
    print(est.summary())
    for path in paths.values():
        print(f"  {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("energy", help="estimate energy per action and area (ERT/ART) without Accelergy", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", metavar="FILES", help="architecture, component classes, variables (and optional ERT/ART) YAML files, or a Jinja2 top file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="template variable / variable override (repeatable)")
    p.add_argument("--out", required=True, type=Path, help="output folder for ERT.yaml, ART.yaml and the table")
    p.set_defaults(func=run)
