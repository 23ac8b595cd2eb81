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
from haloc_hw.fileio import file_sha256

log = logging.getLogger(__name__)

DEMO_SUBSET = 1000
# Budget when no --budget-* flag is given: a fraction of the original model's table cost.
# 0.7 leaves the search a real choice on ResNet-20 at Eyeriss energy, whose cheapest ranks
# reach about 0.47 (the 16-channel layers barely shrink at rank 8).
DEFAULT_BUDGET = "0.7"
BUDGET_KINDS = ("energy", "cycles", "latency", "edp")


def register(subparsers: Any) -> None:
    from haloc_hw.cost.backends import add_backend_arguments, available_backends

    p = subparsers.add_parser(
        "search", help="HALOC rank search + fine-tune under a hardware budget (the main command)",
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        conflict_handler="resolve",
    )
    # Backend options first: where one shares a name with an option below (--device), ours wins
    # and the backend reads the same value (cpu/cuda for the search is also where it measures).
    add_backend_arguments(p)
    p.add_argument("--arch", default="arch/eyeriss.yaml", metavar="FILE", help="accelerator architecture YAML")
    p.add_argument("--constraints", action="append", default=None, metavar="FILE",
                   help="mapping constraints (default: mappings/row_stationary.yaml)")
    p.add_argument("--ert", default=None, metavar="FILE", help="energy table (default: ARCH.ert.yaml beside the arch)")
    p.add_argument("--clock-hz", type=float, default=None, metavar="HZ", help="clock: gives latency_s = cycles / HZ")
    p.add_argument("--model", default="resnet20", help="model name (resnet20, vgg16, resnet18, mobilenet_v2)")
    p.add_argument("--data", default=None, help="fashion-mnist | cifar10 | imagenet | synthetic "
                   "(default: fashion-mnist if found locally, else synthetic)")
    p.add_argument("--data-root", type=Path, default=None, metavar="DIR", help="dataset folder")
    g = p.add_argument_group("budget (one of; a number <= 1 or N% is a fraction of the original model)")
    for kind, example in (("energy", "0.3, 150uJ, 2mJ"), ("cycles", "0.5, 2e6cycles"), ("latency", "0.5, 1.5ms, 200us"),
                          ("edp", "0.3, 4e12pJ*cycles")):
        g.add_argument(f"--budget-{kind}", default=None, metavar="B", help=f"e.g. {example}")
    p.add_argument("--metric", default=None, choices=("energy_pJ", "cycles", "latency_s", "edp"),
                   help="must agree with the budget flag; alone it uses a budget of 0.7 of the original")
    p.add_argument("--base", type=Path, default=None, metavar="MODEL.pt", help="trained model to compress (a run dir or its model.pt)")
    p.add_argument("--table", type=Path, default=None, metavar="FILE", help="cost table (.sqlite); built there if missing")
    p.add_argument("--backend", default="analytical", choices=sorted(available_backends()), help="cost backend for a new table")
    p.add_argument("--jobs", type=int, default=None, help="parallel table jobs (default: one per CPU core)")
    p.add_argument("--step", type=int, default=None, help="rank step of the candidates (default 8/16/32 by layer width)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: cuda when available)")
    p.add_argument("--batch", type=int, default=64, help="batch size of training, search and fine-tuning")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help=f"use N training images (default: {DEMO_SUBSET} when --data is not given, else all)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="training images held out for the architecture steps")
    p.add_argument("--epochs-base", type=int, default=3, help="epochs of the base training when --base is not given")
    p.add_argument("--epochs-search", type=int, default=3, help="search epochs")
    p.add_argument("--warmup-epochs", type=int, default=1, help="weight-only search epochs before alpha moves")
    p.add_argument("--epochs-finetune", type=int, default=2, help="fine-tuning epochs of the compressed model")
    p.add_argument("--lr-w", type=float, default=0.01, help="search: SGD lr of the candidate weights")
    p.add_argument("--lr-alpha", type=float, default=0.01, help="search: Adam lr of alpha")
    p.add_argument("--lambda", dest="lam", type=float, default=1.0, help="search: weight of the feature-map MSE")
    p.add_argument("--eta", type=float, default=1.0, help="search: scale of the hardware factor")
    p.add_argument("--theta", type=float, default=2.0, help="search: exponent of (expected cost / budget)")
    p.add_argument("--tau", type=float, default=1.0, help="search: Gumbel-softmax temperature")
    p.add_argument("--penalty", choices=("paper", "hinge"), default="hinge",
                   help="search: hardware factor (E/budget)^theta only above the budget (hinge, default) "
                        "or always, as in the HALOC paper (paper)")
    p.add_argument("--lr-finetune", type=float, default=0.01, help="fine-tuning lr (cosine decay)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------


def _budget(args: argparse.Namespace) -> tuple[str, str]:
    """(metric, budget text) from the ``--budget-*`` flags and ``--metric``."""
    from haloc_hw.search.budget import metric_for_flag

    given = [(k, getattr(args, f"budget_{k}")) for k in BUDGET_KINDS if getattr(args, f"budget_{k}") is not None]
    if len(given) > 1:
        raise HalocError(f"more than one budget given ({', '.join('--budget-' + k for k, _ in given)})",
                         key="--budget", fix="give exactly one --budget-* flag")
    if not given:
        metric = args.metric or "energy_pJ"
        return metric, DEFAULT_BUDGET
    kind, text = given[0]
    metric = metric_for_flag(kind)
    if args.metric and args.metric != metric:
        raise HalocError(f"--metric {args.metric} contradicts --budget-{kind}", key="--metric",
                         fix=f"drop --metric or use --metric {metric}")
    return metric, str(text)


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


def _data(args: argparse.Namespace) -> Any:
    from haloc_hw.data import build_data

    common = dict(batch_size=args.batch, val_fraction=args.val_fraction, seed=args.seed, device=args.device)
    if args.data is not None:
        return build_data(args.data, args.data_root, subset=args.subset, **common)
    subset = args.subset or DEMO_SUBSET
    try:
        return build_data("fashion-mnist", args.data_root, subset=subset, download=False, **common)
    except HalocError as err:
        print(f"Fashion-MNIST not found ({err.message}); using synthetic data")
        return build_data("synthetic", subset=subset, **common)


def _base_model(args: argparse.Namespace, data: Any, out: Path) -> tuple[Any, dict[str, Any]]:
    import torch

    from haloc_hw.export import MODEL_FILE, load_compressed, save_run_model
    from haloc_hw.models import build_model
    from haloc_hw.train import CHECKPOINT_NAME, TrainConfig, train

    base_path = args.base
    if base_path is None and (out / "base" / MODEL_FILE).exists():
        base_path = out / "base"
        print(f"base model: reusing {base_path / MODEL_FILE}")
    if base_path is not None:
        model = load_compressed(base_path)
        info = getattr(model, "haloc_info", {})
        if info.get("ranks"):
            raise HalocError("the base model is already compressed", file=base_path, key="--base",
                             fix="pass the uncompressed model the search starts from")
        if info.get("model_name", args.model) != args.model:
            raise HalocError(f"base model is a {info.get('model_name')}, not a {args.model}", file=base_path,
                             key="--model", fix=f"pass --model {info.get('model_name')}")
        if info.get("num_classes") not in (None, data.num_classes) or info.get("in_channels") not in (None, data.in_channels):
            raise HalocError("base model does not fit the data (classes or input channels differ)", file=base_path,
                             key="--data", fix="use the dataset the base model was trained on")
        return model.train(), {"path": str(base_path), "trained_here": False}
    print(f"no --base given: training {args.model} for {args.epochs_base} epoch(s) into {out / 'base'}")
    torch.manual_seed(args.seed)
    model = build_model(args.model, num_classes=data.num_classes, in_channels=data.in_channels)
    cfg = TrainConfig(epochs=args.epochs_base, batch_size=args.batch, lr=0.05, schedule="cosine", seed=args.seed,
                      weight_decay=5e-4)
    result = train(model, data, cfg, out_dir=out / "base", resume=(out / "base" / CHECKPOINT_NAME).exists(),
                   progress=not args.no_progress)
    save_run_model(out / "base", model, model_name=args.model, num_classes=data.num_classes,
                   in_channels=data.in_channels, input_size=data.input_size, ranks={}, onnx=False,
                   extra={"top1": result.final_top1})
    return model, {"path": str(out / "base"), "trained_here": True, "epochs": args.epochs_base,
                   "top1": result.final_top1}


def _table(args: argparse.Namespace, model: Any, data: Any, out: Path, build: bool = True) -> Any:
    from haloc_hw.cost.backends import BackendContext, create_backend
    from haloc_hw.cost.executors import make_executor
    from haloc_hw.cost.table import CostTable, build_table
    from haloc_hw.decompose import rank_candidates
    from haloc_hw.spec.shipped import resolve_spec_path
    from haloc_hw.workload import extract_shapes

    layers = extract_shapes(model, data.input_size, 1)
    path = args.table or out / "table.sqlite"
    if path.exists() and (args.table is not None or not build):
        table = CostTable.open(path)
    else:
        arch = resolve_spec_path(args.arch, key="--arch")
        print(f"building the cost table {path} ({args.backend} backend, {arch})")
        executor = make_executor(args.jobs)
        try:
            backend = create_backend(args.backend, args, BackendContext(arch_path=arch, out_dir=path.parent,
                                                                         jobs=executor.workers))
            table = build_table(
                layers, backend, path,
                candidates_fn=lambda info: rank_candidates(info.shape, step=args.step),
                executor=executor, progress=not args.no_progress,
                metadata={"model": args.model, "dataset": data.name, "input_size": list(data.input_size), "batch": 1,
                          "arch_path": str(arch), "arch_sha256": file_sha256(arch),
                          "candidates": {"step": args.step, "equal": True, "max_macs_ratio": None}},
            )
        finally:
            executor.close()
    _check_table_fits(table, layers, path)
    return table, path


def _check_table_fits(table: Any, layers: list[Any], path: Path) -> None:
    """The table must describe this model at this input size: same layers, same shapes."""
    known = set(table.layers())
    missing = [info.name for info in layers if info.name not in known]
    if missing:
        raise HalocError(f"cost table lacks layers {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}",
                         file=path, key="layers", fix="build the table for this model (or drop --table)")
    for info in layers:
        shape = table.layer(info.name).shape
        if (shape.C, shape.M, shape.R, shape.S, shape.P, shape.Q, shape.G) != (
                info.shape.C, info.shape.M, info.shape.R, info.shape.S, info.shape.P, info.shape.Q, info.shape.G):
            raise HalocError(f"layer {info.name} has another shape in the table than in the model", file=path,
                             key=info.name, fix="build the table for this model and input size")


def _layer_costs(table: Any, ranks: dict[str, tuple[int, int]], metrics: list[str]) -> dict[str, Any]:
    rows = {}
    for name in table.layers():
        row: dict[str, Any] = {"rank": list(ranks[name]) if name in ranks else None}
        for m in metrics:
            original = table.original_cost(name, m)
            row[f"original_{m}"] = original
            row[f"compressed_{m}"] = table.cost(name, *ranks[name], m) if name in ranks else original
        rows[name] = row
    return rows


def _available_metrics(table: Any) -> list[str]:
    out = []
    for m in ("cycles", "energy_pJ", "latency_s", "edp"):
        try:
            table.model_cost({}, m)
        except HalocError:
            continue
        out.append(m)
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from haloc_hw import __version__
    from haloc_hw.export import load_compressed, save_run_model
    from haloc_hw.fileio import write_json_atomic, write_yaml_atomic
    from haloc_hw.metrics import count_flops_params
    from haloc_hw.search import HalocSearch, SearchConfig, Supernet
    from haloc_hw.search.search import CHECKPOINT_NAME
    from haloc_hw.train import CHECKPOINT_NAME as TRAIN_CHECKPOINT
    from haloc_hw.train import TrainConfig, evaluate, fine_tune, seed_everything

    out: Path = args.out
    metric, budget_text = _budget(args)
    dist_rank = _init_distributed(args)
    if not args.resume and (out / CHECKPOINT_NAME).exists():
        raise HalocError("the folder already holds a search", file=out, key="--out",
                         fix="pass --resume to continue it, or choose another --out")
    if args.batch < 1:
        raise HalocError(f"--batch must be at least 1, got {args.batch}", key="--batch", fix="use a positive batch")
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / ("search.log" if not dist_rank else f"search.rank{dist_rank}.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
        for h in root.handlers:
            if h is not handler and h.level == logging.NOTSET:
                h.setLevel(old_level)
    try:
        seed_everything(args.seed)
        data = _data(args)
        if dist_rank:  # rank 0 trains the base and builds the table; the others then read them
            _barrier()
            model, base_info = _base_model(args, data, out)
            table, table_path = _table(args, model, data, out, build=False)
        else:
            model, base_info = _base_model(args, data, out)
            table, table_path = _table(args, model, data, out)
            _barrier()
        candidates = {n: table.candidates(n) for n in table.decomposable_layers() if table.candidates(n)}
        cfg = SearchConfig(epochs=args.epochs_search, warmup_epochs=min(args.warmup_epochs, args.epochs_search),
                           lr_w=args.lr_w, lr_alpha=args.lr_alpha, lam=args.lam, eta=args.eta, theta=args.theta,
                           tau=args.tau, penalty=args.penalty, budget=budget_text, metric=metric, seed=args.seed, device=str(data.device),
                           progress=not args.no_progress)
        config = {
            "command": "search", "haloc_hw_version": __version__, "model": args.model, "data": data.name,
            "data_root": None if args.data_root is None else str(args.data_root), "subset": args.subset,
            "input_size": list(data.input_size), "arch": args.arch, "backend": args.backend,
            "table": {"path": str(table_path), "sha256": file_sha256(table_path),
                      "metadata": {k: v for k, v in table.metadata.items() if k != "backend_fingerprint"}},
            "base": base_info, "budget": {"metric": metric, "value": budget_text},
            "search": cfg.to_dict(), "finetune": {"epochs": args.epochs_finetune, "lr": args.lr_finetune},
            "batch": args.batch, "seed": args.seed, "device": str(data.device),
        }
        if not dist_rank:
            write_yaml_atomic(out / "config.yaml", config)
        supernet = Supernet(model, candidates)
        for name, why in supernet.skipped.items():
            log.info("not searched: %s (%s)", name, why)
        print(f"searching ranks of {len(supernet.layer_names)} layers, budget {budget_text} of {metric}")
        plan = HalocSearch(cfg).run(supernet, data, table, out, resume=args.resume, table_source=str(table_path))
        if dist_rank:
            return 0  # fine-tuning, evaluation and export run on rank 0
        compressed = supernet.export_compressed(plan.ranks)
        del supernet
        ft = fine_tune(compressed, data,
                       TrainConfig.for_fine_tune(epochs=args.epochs_finetune, lr=args.lr_finetune, batch_size=args.batch,
                                                 seed=args.seed),
                       out_dir=out / "finetune", resume=(out / "finetune" / TRAIN_CHECKPOINT).exists(),
                       progress=not args.no_progress)
        device = data.device
        base_eval = evaluate(model.to(device), data.test, device)
        comp_eval = evaluate(compressed, data.test, device)
        base_macs, base_params = count_flops_params(model, data.input_size)
        comp_macs, comp_params = count_flops_params(compressed, data.input_size)
        metrics_avail = _available_metrics(table)
        totals = {m: {"original": table.model_cost({}, m), "compressed": table.model_cost(plan.ranks, m)}
                  for m in metrics_avail}
        metrics = {
            "model": args.model, "data": data.name,
            "top1": {"original": base_eval["top1"], "compressed": comp_eval["top1"]},
            "loss": {"original": base_eval["loss"], "compressed": comp_eval["loss"]},
            "macs": {"original": base_macs, "compressed": comp_macs},
            "params": {"original": base_params, "compressed": comp_params},
            "table_cost": totals,
            "budget": {"metric": metric, "value": plan.budget, "text": budget_text, "met": plan.met,
                       "repaired": plan.repaired, "note": plan.note},
            "finetune_epochs": len(ft.history),
            "layers": _layer_costs(table, plan.ranks, metrics_avail),
        }
        saved = save_run_model(out, compressed, model_name=args.model, num_classes=data.num_classes,
                               in_channels=data.in_channels, input_size=data.input_size, ranks=plan.ranks,
                               onnx=not args.no_onnx, extra={"top1": comp_eval["top1"], "metric": metric,
                                                             "budget": plan.budget, "table_cost": totals[metric]["compressed"]
                                                             if metric in totals else None})
        reloaded = load_compressed(out)
        x = next(iter(data.test))[0][:4].cpu()
        with torch.no_grad():
            same = torch.allclose(reloaded(x), compressed.cpu().eval()(x), atol=1e-4, rtol=1e-4)
        metrics["reload_matches"] = bool(same)
        metrics["onnx"] = None if saved.get("onnx") is None else str(saved["onnx"])
        write_json_atomic(out / "metrics.json", metrics)
        _print_summary(plan, metrics, out)
        return 0
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
        if dist_rank is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _print_summary(plan: Any, metrics: dict[str, Any], out: Path) -> None:
    metric = plan.metric
    rows = [("layer", "rank (r1,r2)", "p", f"original {metric}", f"compressed {metric}", "ratio")]
    for layer in plan.layers:
        rows.append((layer.name, f"({layer.r1},{layer.r2})" + ("*" if layer.repaired else ""), f"{layer.probability:.2f}",
                     f"{layer.original_cost:.4g}", f"{layer.cost:.4g}",
                     f"{layer.cost / layer.original_cost:.2f}" if layer.original_cost else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    t = metrics["top1"]
    print(f"\nmodel {metric}: {plan.original_total:.4g} -> {plan.total_cost:.4g} "
          f"({plan.total_cost / plan.original_total:.2f}x; budget {plan.budget:.4g}, "
          f"{'met' if plan.met else 'NOT met'}{', repaired' if plan.repaired else ''})")
    print(f"top-1: {t['original']:.2f}% -> {t['compressed']:.2f}%   MACs: {metrics['macs']['original']:,} -> "
          f"{metrics['macs']['compressed']:,}   params: {metrics['params']['original']:,} -> "
          f"{metrics['params']['compressed']:,}")
    if plan.repaired:
        print("* moved to a cheaper candidate by the budget repair (see ranks.json)")
    print(f"run folder: {out}")
