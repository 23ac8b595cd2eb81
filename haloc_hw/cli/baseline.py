"""``haloc-hw baseline``: uniform, VBMF, greedy or ALDS ranks at the same budget as the search, then the same fine-tune.

Steps, as in ``haloc-hw search`` (the shared ones live in :mod:`haloc_hw.pipeline`):

1. data, base model (``--base``, or a short training run in ``OUT/base``), cost table
   (``--table``, built there when missing, or ``OUT/table.sqlite``);
2. the ranks of ``--method`` within the budget (``OUT/ranks.json`` in the search's format,
   ``OUT/baseline.json`` with what the method found: the uniform fraction, the VBMF
   estimates and scale, the greedy steps, or the ALDS errors);
3. the Tucker-2 decomposition of the base model at those ranks, fine-tuned
   (``OUT/finetune/``), evaluated and exported (``model.pt``, ``model.onnx``, ``metrics.json``,
   ``config.yaml``).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from haloc_hw.baselines import METHODS
    from haloc_hw.cli.options import add_run_options, add_run_parser

    p = add_run_parser(subparsers, "baseline", doc=__doc__,
                       help="uniform / VBMF / greedy / ALDS ranks at the search's budget, fine-tuned the same way")
    p.add_argument("--method", required=True, choices=METHODS, help="rank allocation rule")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One baseline run into ``args.out`` (see the module docstring)."""
    from haloc_hw import pipeline
    from haloc_hw.cli.options import run_config

    pipeline.run_baseline(run_config(args, "baseline"), args.method, echo=print)
    return 0
