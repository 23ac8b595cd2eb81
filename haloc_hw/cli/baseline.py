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
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    from haloc_hw.baselines import METHODS
    from haloc_hw.pipeline import add_run_arguments, add_run_parser

    p = add_run_parser(subparsers, "baseline", doc=__doc__,
                       help="uniform / VBMF / greedy / ALDS ranks at the search's budget, fine-tuned the same way")
    p.add_argument("--method", required=True, choices=METHODS, help="rank allocation rule")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One baseline run into ``args.out`` (see the module docstring)."""
    from haloc_hw import pipeline
    from haloc_hw.baselines import allocate
    from haloc_hw.decompose import decompose_model
    from haloc_hw.fileio import write_json_atomic, write_yaml_atomic
    from haloc_hw.train import seed_everything

    out: Path = args.out
    metric, budget_text = pipeline.resolve_run_budget(args)
    budget = pipeline.check_run_inputs(args, metric, budget_text, out)
    out.mkdir(parents=True, exist_ok=True)
    with pipeline.run_log(out / "baseline.log"):
        seed_everything(args.seed)
        data = pipeline.prepare_data(args, echo=print)
        model, base_info = pipeline.load_or_train_base(args, data, out, echo=print)
        table, table_path = pipeline.load_or_build_table(args, model, data, out, echo=print)
        candidates = pipeline.table_candidates(table)
        print(f"{args.method} baseline: ranks of {len(candidates)} layers, budget {budget_text} of {metric}")
        result = allocate(args.method, table, candidates, budget, model, source=str(table_path),
                          progress=not args.no_progress)
        write_yaml_atomic(out / "config.yaml", pipeline.run_config(
            "baseline", args, data=data, table=table, table_path=table_path, base_info=base_info, metric=metric,
            budget_text=budget_text, method=args.method))
        result.plan.save(out / "ranks.json")
        write_json_atomic(out / "baseline.json", result.to_dict())
        compressed = decompose_model(model, result.ranks)
        metrics = pipeline.finish_run(out, base=model, compressed=compressed, data=data, table=table, plan=result.plan,
                                      model_name=args.model, epochs=args.epochs_finetune, lr=args.lr_finetune,
                                      batch=args.batch, seed=args.seed, onnx=not args.no_onnx,
                                      progress=not args.no_progress, extra_metrics={"method": args.method})
        pipeline.print_summary(result.plan, metrics, out, echo=print)
        return 0
