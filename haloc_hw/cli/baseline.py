"""``haloc-hw baseline``: uniform, VBMF or greedy ranks at the same budget as the search, then the same fine-tune.

Steps, as in ``haloc-hw search`` (and with its code for data, base model and cost table):

1. data, base model (``--base``, or a short training run in ``OUT/base``), cost table
   (``--table``, built there when missing, or ``OUT/table.sqlite``);
2. the ranks of ``--method`` within the budget (``OUT/ranks.json`` in the search's format,
   ``OUT/baseline.json`` with what the method found: the uniform fraction, the VBMF
   estimates and scale, or the greedy steps);
3. the Tucker-2 decomposition of the base model at those ranks, fine-tuned
   (``OUT/finetune/``), evaluated and exported (``model.pt``, ``model.onnx``, ``metrics.json``,
   ``config.yaml``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)

BUDGET_KINDS = ("energy", "cycles", "latency", "edp")


def add_run_arguments(p: argparse.ArgumentParser, *, arch_repeats: bool = False) -> None:
    """The options a baseline or sweep run shares with ``haloc-hw search`` (same names, same defaults)."""
    from haloc_hw.cost.backends import add_backend_arguments, available_backends

    add_backend_arguments(p)
    if arch_repeats:
        p.add_argument("--arch", action="append", default=None, metavar="FILE",
                       help="accelerator architecture YAML (repeat for several; default arch/eyeriss.yaml and "
                            "arch/eyeriss_16x16.yaml)")
    else:
        p.add_argument("--arch", default="arch/eyeriss.yaml", metavar="FILE", help="accelerator architecture YAML")
    p.add_argument("--constraints", action="append", default=None, metavar="FILE",
                   help="mapping constraints (default: mappings/row_stationary.yaml)")
    p.add_argument("--ert", default=None, metavar="FILE", help="energy table (default: ARCH.ert.yaml beside the arch)")
    p.add_argument("--clock-hz", type=float, default=None, metavar="HZ", help="clock: gives latency_s = cycles / HZ")
    p.add_argument("--model", default="resnet20", help="model name (resnet20, vgg16, resnet18, mobilenet_v2)")
    p.add_argument("--data", default=None, help="fashion-mnist | cifar10 | imagenet | synthetic "
                   "(default: fashion-mnist if found locally, else synthetic)")
    p.add_argument("--data-root", type=Path, default=None, metavar="DIR", help="dataset folder")
    g = p.add_argument_group("budget (one of; a number <= 1 or N%% is a fraction of the original model)")
    for kind, example in (("energy", "0.3, 150uJ, 2mJ"), ("cycles", "0.5, 2e6cycles"), ("latency", "0.5, 1.5ms, 200us"),
                          ("edp", "0.3, 4e12pJ*cycles")):
        g.add_argument(f"--budget-{kind}", default=None, metavar="B", help=f"e.g. {example}")
    p.add_argument("--metric", default=None, choices=("energy_pJ", "cycles", "latency_s", "edp"),
                   help="must agree with the budget flag; alone it uses a budget of 0.5 of the original")
    p.add_argument("--base", type=Path, default=None, metavar="MODEL.pt", help="trained model to compress (a run dir or its model.pt)")
    if not arch_repeats:
        p.add_argument("--table", type=Path, default=None, metavar="FILE", help="cost table (.sqlite); built there if missing")
    p.add_argument("--backend", default="analytical", choices=sorted(available_backends()), help="cost backend for a new table")
    p.add_argument("--jobs", type=int, default=None, help="parallel table jobs (default: one per CPU core)")
    p.add_argument("--step", type=int, default=None, help="rank step of the candidates (default 8/16/32 by layer width)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: cuda when available)")
    p.add_argument("--batch", type=int, default=64, help="batch size of training and fine-tuning")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="use N training images (default: 1000 when --data is not given, else all)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="training images held out (as in the search)")
    p.add_argument("--epochs-base", type=int, default=3, help="epochs of the base training when --base is not given")
    p.add_argument("--epochs-finetune", type=int, default=2, help="fine-tuning epochs of the compressed model")
    p.add_argument("--lr-finetune", type=float, default=0.01, help="fine-tuning lr (cosine decay)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers: Any) -> None:
    from haloc_hw.baselines import METHODS

    p = subparsers.add_parser(
        "baseline", help="uniform / VBMF / greedy ranks at the search's budget, fine-tuned the same way",
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        conflict_handler="resolve",
    )
    p.add_argument("--method", required=True, choices=METHODS, help="rank allocation rule")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One baseline run into ``args.out`` (see the module docstring)."""
    from haloc_hw import __version__
    from haloc_hw.baselines import allocate
    from haloc_hw.baselines.finish import finish_run
    from haloc_hw.cli import search as search_cli
    from haloc_hw.decompose import decompose_model
    from haloc_hw.fileio import file_sha256, write_json_atomic, write_yaml_atomic
    from haloc_hw.search.budget import parse_budget
    from haloc_hw.train import seed_everything

    out: Path = args.out
    metric, budget_text = search_cli._budget(args)
    if args.batch < 1:
        raise HalocError(f"--batch must be at least 1, got {args.batch}", key="--batch", fix="use a positive batch")
    budget = parse_budget(budget_text, metric)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "baseline.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        seed_everything(args.seed)
        data = search_cli._data(args)
        model, base_info = search_cli._base_model(args, data, out)
        table, table_path = search_cli._table(args, model, data, out)
        candidates = {n: table.candidates(n) for n in table.decomposable_layers() if table.candidates(n)}
        print(f"{args.method} baseline: ranks of {len(candidates)} layers, budget {budget_text} of {metric}")
        result = allocate(args.method, table, candidates, budget, model, source=str(table_path),
                          progress=not args.no_progress)
        config = {
            "command": "baseline", "method": args.method, "haloc_hw_version": __version__, "model": args.model,
            "data": data.name, "data_root": None if args.data_root is None else str(args.data_root),
            "subset": args.subset, "input_size": list(data.input_size), "arch": args.arch, "backend": args.backend,
            "table": {"path": str(table_path), "sha256": file_sha256(table_path),
                      "metadata": {k: v for k, v in table.metadata.items() if k != "backend_fingerprint"}},
            "base": base_info, "budget": {"metric": metric, "value": budget_text},
            "finetune": {"epochs": args.epochs_finetune, "lr": args.lr_finetune},
            "batch": args.batch, "seed": args.seed, "device": str(data.device),
        }
        write_yaml_atomic(out / "config.yaml", config)
        result.plan.save(out / "ranks.json")
        write_json_atomic(out / "baseline.json", result.to_dict())
        compressed = decompose_model(model, result.ranks)
        metrics = finish_run(out, base=model, compressed=compressed, data=data, table=table, plan=result.plan,
                             model_name=args.model, epochs=args.epochs_finetune, lr=args.lr_finetune,
                             batch=args.batch, seed=args.seed, onnx=not args.no_onnx,
                             progress=not args.no_progress, extra_metrics={"method": args.method})
        search_cli._print_summary(result.plan, metrics, out)
        return 0
    finally:
        root.removeHandler(handler)
        handler.close()
