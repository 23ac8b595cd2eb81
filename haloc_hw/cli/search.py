"""``haloc-hw search``: the whole HALOC flow, from a trained model to a compressed one within a budget.

Steps (each reused when its output already exists in ``--out``, so ``--resume`` continues):

1. data (``--data``; without it Fashion-MNIST from /usr/share/datasets when present, else
   synthetic data, on a 1000-image subset);
2. the base model: ``--base run/model.pt`` or, without it, a short training run saved to
   ``OUT/base/``;
3. the cost table: ``--table FILE`` (built there when missing) or ``OUT/table.sqlite``, built
   with ``--backend`` (default analytical) over every layer and its rank candidates;
4. the HALOC search (``OUT/ranks.json``, ``OUT/search_history.json``, resumable checkpoint);
5. the compressed model from the searched factors, fine-tuned (``OUT/finetune/``), evaluated;
6. ``OUT/model.pt`` + ``model.onnx``, ``metrics.json``, ``config.yaml``, ``search.log``.

The defaults are sized for a demo that finishes in minutes on two CPU cores; raise the
epochs and drop ``--subset`` for real results. The work is :func:`haloc_hw.pipeline.run_search`.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from haloc_hw.cli.options import add_run_options, add_run_parser, add_search_options

    p = add_run_parser(subparsers, "search", doc=__doc__,
                       help="HALOC rank search + fine-tune under a hardware budget (the main command)")
    add_run_options(p)
    add_search_options(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haloc_hw import pipeline
    from haloc_hw.cli.options import run_config

    pipeline.run_search(run_config(args, "search"), echo=print)
    return 0
