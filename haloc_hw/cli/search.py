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
epochs and drop ``--subset`` for real results.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    from haloc_hw.pipeline import add_run_arguments, add_run_parser, add_search_arguments

    p = add_run_parser(subparsers, "search", doc=__doc__,
                       help="HALOC rank search + fine-tune under a hardware budget (the main command)")
    add_run_arguments(p)
    add_search_arguments(p)
    p.add_argument("--tau-final", type=float, default=None, help="anneal the Gumbel temperature to this (geometric)")
    p.add_argument("--stop-entropy", type=float, default=None,
                   help="stop when every layer's normalised entropy of p is at most this (epochs-search is the cap)")
    p.add_argument("--stop-delta", type=float, default=None, help="stop when no p moved more than this in an epoch")
    p.add_argument("--distill", default=None, metavar="T,ALPHA",
                   help="distil from the --base model while fine-tuning (temperature, weight), e.g. 4,0.9")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------


def _init_distributed(args: argparse.Namespace) -> int | None:
    """Under torchrun (WORLD_SIZE > 1): join the process group and pick this rank's device.

    NCCL on CUDA, gloo on CPU. Returns the rank, or ``None`` when not distributed. The
    search then runs data-parallel (see :mod:`haloc_hw.search.search`); base training,
    table building, fine-tuning and export run on rank 0 only.
    """
    import os

    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if want_cuda:
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
    else:
        args.device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    rank = dist.get_rank()
    if rank:
        args.no_progress = True
    return rank


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def run(args: argparse.Namespace) -> int:
    from haloc_hw import pipeline
    from haloc_hw.search.search import CHECKPOINT_NAME

    out: Path = args.out
    metric, budget_text = pipeline.resolve_run_budget(args)
    dist_rank = _init_distributed(args)
    try:
        if not args.resume and (out / CHECKPOINT_NAME).exists():
            raise HalocError("the folder already holds a search", file=out, key="--out",
                             fix="pass --resume to continue it, or choose another --out")
        pipeline.check_run_inputs(args, metric, budget_text, out)
        _distill(args)
        out.mkdir(parents=True, exist_ok=True)
        with pipeline.run_log(out / ("search.log" if not dist_rank else f"search.rank{dist_rank}.log")):
            return _search(args, out, metric, budget_text, dist_rank)
    finally:
        if dist_rank is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _search(args: argparse.Namespace, out: Path, metric: str, budget_text: str, dist_rank: int | None) -> int:
    """Data, base model, table, search, then (rank 0) fine-tuning and export; see the module docstring."""
    from haloc_hw import pipeline
    from haloc_hw.fileio import write_yaml_atomic
    from haloc_hw.search import HalocSearch, SearchConfig, Supernet
    from haloc_hw.train import seed_everything

    seed_everything(args.seed)
    data = pipeline.prepare_data(args, echo=print)
    if dist_rank:  # rank 0 trains the base and builds the table; the others then read them
        _barrier()
        model, base_info = pipeline.load_or_train_base(args, data, out, echo=print)
        table, table_path = pipeline.load_or_build_table(args, model, data, out, build=False, echo=print)
    else:
        model, base_info = pipeline.load_or_train_base(args, data, out, echo=print)
        table, table_path = pipeline.load_or_build_table(args, model, data, out, echo=print)
        _barrier()
    candidates = pipeline.table_candidates(table)
    cfg = SearchConfig(epochs=args.epochs_search, warmup_epochs=min(args.warmup_epochs, args.epochs_search),
                       lr_w=args.lr_w, lr_alpha=args.lr_alpha, lam=args.lam, eta=args.eta, theta=args.theta,
                       tau=args.tau, penalty=args.penalty, arch_steps=args.arch_steps, decode=args.decode,
                       budget=budget_text, metric=metric, seed=args.seed, device=str(data.device),
                       progress=not args.no_progress, cuda_graphs=not args.no_cuda_graphs,
                       tau_final=args.tau_final, stop_entropy=args.stop_entropy, stop_delta=args.stop_delta)
    if not dist_rank:
        write_yaml_atomic(out / "config.yaml", pipeline.run_config(
            "search", args, data=data, table=table, table_path=table_path, base_info=base_info, metric=metric,
            budget_text=budget_text, search=cfg.to_dict()))
    supernet = Supernet(model, candidates)
    for name, why in supernet.skipped.items():
        log.info("not searched: %s (%s)", name, why)
    print(f"searching ranks of {len(supernet.layer_names)} layers, budget {budget_text} of {metric}")
    plan = HalocSearch(cfg).run(supernet, data, table, out, resume=args.resume, table_source=str(table_path))
    if dist_rank:
        return 0  # fine-tuning, evaluation and export run on rank 0
    compressed = supernet.export_compressed(plan.ranks)
    del supernet
    metrics = pipeline.finish_run(out, base=model, compressed=compressed, data=data, table=table, plan=plan,
                                  model_name=args.model, epochs=args.epochs_finetune, lr=args.lr_finetune,
                                  batch=args.batch, seed=args.seed, onnx=not args.no_onnx,
                                  progress=not args.no_progress, budget_text=budget_text, distill=_distill(args))
    pipeline.print_summary(plan, metrics, out, echo=print)
    return 0


def _distill(args: argparse.Namespace) -> tuple[float, float] | None:
    """``--distill T,ALPHA`` read and checked: it needs ``--base`` (the teacher)."""
    from haloc_hw.train import parse_distill

    distill = parse_distill(getattr(args, "distill", None))
    if distill is not None and args.base is None:
        raise HalocError("--distill needs the uncompressed model to distil from", key="--distill",
                         fix="pass --base RUN_DIR (a model written by haloc-hw train), or drop --distill")
    return distill
