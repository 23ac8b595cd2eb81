"""``haloc-hw codesign``: search accelerator parameters and ranks together; the Pareto set of (design, ranks).

See :mod:`haloc_hw.codesign.runner` for what is run and written (``points.csv``,
``pareto.csv``, ``codesign.json``, ``report.html``, ``haloc/<point>/`` runs). A rerun with
the same options reuses every finished point.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("codesign", help="co-design: accelerator variables x ranks, Pareto set",
                              description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--space", type=Path, required=True, metavar="FILE", help="design-space YAML (see spaces/)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder")
    p.add_argument("--model", default="resnet20", help="model name")
    p.add_argument("--data", default=None, help="fashion-mnist | cifar10 | imagenet | synthetic (default: local "
                   "Fashion-MNIST, else synthetic)")
    p.add_argument("--data-root", type=Path, default=None, metavar="DIR")
    p.add_argument("--subset", type=int, default=None, metavar="N", help="use N training images")
    p.add_argument("--base", type=Path, default=None, metavar="MODEL.pt", help="trained model to compress")
    p.add_argument("--budget-energy", default=None, metavar="B", help="rank budget on every point (default 0.7 of "
                   "the original model's energy on that point)")
    p.add_argument("--budget-cycles", default=None, metavar="B")
    p.add_argument("--budget-edp", default=None, metavar="B")
    p.add_argument("--methods", default="uniform,greedy", metavar="LIST", help="cheap allocators run on every point")
    p.add_argument("--step", type=int, default=None, help="rank step of the candidates")
    p.add_argument("--jobs", type=int, default=None, help="local worker processes (default: one per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler (tcp://host:8786) instead "
                   "of local processes; the run folder must be on a file system the workers share")
    p.add_argument("--scheduler-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("--haloc-candidates", type=int, default=2, metavar="K",
                   help="full HALOC search + fine-tuning on the K Pareto points of least EDP (0: none)")
    p.add_argument("--epochs-base", type=int, default=3)
    p.add_argument("--epochs-search", type=int, default=3)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--epochs-finetune", type=int, default=2)
    p.add_argument("--lr-finetune", type=float, default=0.01)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-html", action="store_true", help="do not write report.html")
    p.add_argument("--progress", action="store_true", help="progress bars while training")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """The typed :class:`~haloc_hw.codesign.config.CodesignConfig` of the parsed options."""
    from haloc_hw.codesign.config import CodesignConfig
    from haloc_hw.settings import DEFAULT_BUDGET
    from haloc_hw.errors import HalocError

    from haloc_hw.cost.metric import metric_for_flag

    given = [(k, getattr(args, f"budget_{k}")) for k in ("energy", "cycles", "edp") if getattr(args, f"budget_{k}")]
    if len(given) > 1:
        raise HalocError("more than one budget given", key="--budget", fix="give one --budget-* flag")
    kind, text = given[0] if given else ("energy", DEFAULT_BUDGET)
    metric = metric_for_flag(kind)
    return CodesignConfig(
        out=args.out, model=args.model, data=args.data, data_root=args.data_root, subset=args.subset, base=args.base,
        budget=str(text), metric=metric, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        step=args.step, jobs=args.jobs, scheduler=args.scheduler, scheduler_timeout_s=args.scheduler_timeout,
        haloc_candidates=args.haloc_candidates, epochs_base=args.epochs_base, epochs_search=args.epochs_search,
        warmup_epochs=args.warmup_epochs, epochs_finetune=args.epochs_finetune, lr_finetune=args.lr_finetune,
        batch=args.batch, device=args.device, seed=args.seed, html=not args.no_html, progress=args.progress)


def run(args: argparse.Namespace) -> int:
    from haloc_hw.codesign import run as run_codesign

    result = run_codesign(args.space, config_from_args(args), echo=print)
    print(f"\nPareto front ({len(result.pareto)} of {len(result.rows)} rows; energy, cycles, area, accuracy proxy):")
    for r in result.pareto:
        acc = f", HALOC top-1 {r['top1_haloc']:.2f}%" if r.get("top1_haloc") is not None else ""
        print(f"  {r['id']} {r['method']:8s} {', '.join(f'{k}={v}' for k, v in r['values'].items())}: "
              f"{r['energy_pJ'] / 1e6:.4g} uJ, {r['cycles']:.4g} cycles, {r['area_mm2']:.4g} mm2, "
              f"proxy error {r['proxy_error']:.4f}{acc}")
    if result.reference is not None:
        print(f"reference point: {result.reference.get('status')}")
    print(f"wrote {', '.join(str(p) for p in result.files.values())}")
    return 0
