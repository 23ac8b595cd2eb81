"""``haloc-hw energy FILES... [--set KEY=VALUE]... --out DIR``: energy and area without Accelergy.

Reads an architecture with its compound classes (and, optionally, the user's own ERT/ART, which win
per component), estimates every component with :mod:`haloc_hw.energy`, and writes ``ERT.yaml``,
``ART.yaml`` and ``energy_table.md`` / ``.csv`` into ``--out`` after validating everything.
Never imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError


def _parse_set(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise HalocError(f"--set '{item}' is not KEY=VALUE", key="--set", fix="write --set meshX=16")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise HalocError(f"--set '{item}' has no key", key="--set", fix="write --set meshX=16")
        import yaml

        try:
            out[k] = yaml.safe_load(v) if v.strip() else ""
        except yaml.YAMLError:
            out[k] = v
    return out


def run(args: argparse.Namespace) -> int:
    from haloc_hw.energy import estimate
    from haloc_hw.energy.files import load_files
    from haloc_hw.energy.writers import write_outputs

    set_values = _parse_set(args.set)
    loaded = load_files(args.files, set_values=set_values)
    est = estimate(loaded.components, loaded.classes, user_ert=loaded.ert, user_art=loaded.art, file=loaded.arch_file, classes_file=loaded.classes_file)
    paths = write_outputs(est, args.out)
    print(Path(args.out))
    print(est.summary())
    for name in paths:
        print(f"  {paths[name]}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("energy", help="estimate energy per action and area (ERT/ART) without Accelergy", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", metavar="FILES", help="architecture, component classes (and optional ERT/ART) YAML files")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a variable (repeatable)")
    p.add_argument("--out", required=True, type=Path, help="output folder for ERT.yaml, ART.yaml and the table")
    p.set_defaults(func=run)
