"""The steps every compression run shares: ``haloc-hw search``, ``haloc-hw baseline`` and ``haloc-hw sweep``.

A run is: data -> base model -> cost table -> budget -> ranks (searched, or allocated by a
baseline) -> compressed model fine-tuned, evaluated and exported. Only the ranks step
differs between the commands, so everything around it lives here, and a search run folder
and a baseline run folder are compared on equal terms by ``haloc-hw report`` (same
fine-tuning recipe, same ``metrics.json`` keys, same ``model.pt`` / ``model.onnx``).

The functions read the parsed options of :func:`add_run_arguments` (an
``argparse.Namespace``); messages for the user go through ``echo`` (the module logger by default; the CLI passes ``print``,
as the commands show them on the terminal). Heavy imports (torch, the cost backends) are
made inside the functions so building the CLI parser stays cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from haloc_hw.cost.base import METRICS
from haloc_hw.errors import HalocError
from haloc_hw.fileio import file_sha256, write_json_atomic

log = logging.getLogger(__name__)

Echo = Callable[[str], None]

DEMO_SUBSET = 1000
# Budget when no --budget-* flag is given: a fraction of the original model's table cost.
# 0.7 leaves the search a real choice on ResNet-20 at Eyeriss energy, whose cheapest ranks
# reach about 0.47 (the 16-channel layers barely shrink at rank 8).
DEFAULT_BUDGET = "0.7"
BUDGET_KINDS = ("energy", "cycles", "latency", "edp")


# ---------------------------------------------------------------------------------------
# command-line options


def add_run_parser(subparsers: Any, name: str, *, help: str, doc: str) -> argparse.ArgumentParser:
    """The sub-command parser of a run command (``doc``'s first line as description, defaults shown).

    It resolves option conflicts, as :func:`add_run_arguments` needs.
    """
    return subparsers.add_parser(name, help=help, description=doc.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter, conflict_handler="resolve")


def add_run_arguments(p: argparse.ArgumentParser, *, arch_repeats: bool = False) -> None:
    """The options search, baseline and sweep share (same names, same defaults).

    ``arch_repeats``: ``--arch`` may be given several times and there is no ``--table`` (the
    sweep builds one table per architecture). The parser should use
    ``conflict_handler="resolve"``: the backend options come first, and where one shares a
    name with an option here (``--device``), ours wins and the backend reads the same value.
    """
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
    g = p.add_argument_group("budget (one of; a number <= 1 or N% is a fraction of the original model)")
    for kind, example in (("energy", "0.3, 150uJ, 2mJ"), ("cycles", "0.5, 2e6cycles"), ("latency", "0.5, 1.5ms, 200us"),
                          ("edp", "0.3, 4e12pJ*cycles")):
        g.add_argument(f"--budget-{kind}", default=None, metavar="B", help=f"e.g. {example}")
    p.add_argument("--metric", default=None, choices=METRICS,
                   help=f"must agree with the budget flag; alone it uses a budget of {DEFAULT_BUDGET} of the original")
    p.add_argument("--base", type=Path, default=None, metavar="MODEL.pt", help="trained model to compress (a run dir or its model.pt)")
    if not arch_repeats:
        p.add_argument("--table", type=Path, default=None, metavar="FILE", help="cost table (.sqlite); built there if missing")
    p.add_argument("--backend", default="analytical", choices=sorted(available_backends()), help="cost backend for a new table")
    p.add_argument("--jobs", type=int, default=None, help="parallel table jobs (default: one per CPU core)")
    p.add_argument("--step", type=int, default=None, help="rank step of the candidates (default 8/16/32 by layer width)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: cuda when available)")
    p.add_argument("--batch", type=int, default=64, help="batch size of training, search and fine-tuning")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help=f"use N training images (default: {DEMO_SUBSET} when --data is not given, else all)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="training images held out for the search's architecture steps")
    p.add_argument("--epochs-base", type=int, default=3, help="epochs of the base training when --base is not given")
    p.add_argument("--epochs-finetune", type=int, default=2, help="fine-tuning epochs of the compressed model")
    p.add_argument("--lr-finetune", type=float, default=0.01, help="fine-tuning lr (cosine decay)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The HALOC search's own options (``haloc-hw search``, and the sweep's method ``haloc``)."""
    s = p.add_argument_group("search")
    s.add_argument("--epochs-search", type=int, default=3, help="search epochs")
    s.add_argument("--warmup-epochs", type=int, default=1, help="weight-only search epochs before alpha moves")
    s.add_argument("--lr-w", type=float, default=0.01, help="SGD lr of the candidate weights")
    s.add_argument("--lr-alpha", type=float, default=0.01, help="Adam lr of alpha")
    s.add_argument("--lambda", dest="lam", type=float, default=1.0, help="weight of the feature-map MSE")
    s.add_argument("--eta", type=float, default=1.0, help="scale of the hardware factor")
    s.add_argument("--theta", type=float, default=2.0, help="exponent of (expected cost / budget)")
    s.add_argument("--tau", type=float, default=1.0, help="Gumbel-softmax temperature")
    s.add_argument("--arch-steps", choices=("per-val-batch", "per-train-batch"), default="per-val-batch",
                   help="architecture steps per epoch: one per validation batch, spread over the epoch (default), "
                        "or one after every weight step (cycling the validation part)")
    s.add_argument("--decode", choices=("argmax", "budget", "expected"), default="argmax",
                   help="final ranks: argmax of p per layer (the paper); the most probable ranks within 2 %% "
                        "below the budget (budget); or per layer the candidate nearest its expected cost under p, "
                        "scaled to fit the budget (expected). The last two spend what the argmax leaves unused")
    s.add_argument("--penalty", choices=("paper", "hinge"), default="hinge",
                   help="hardware factor (E/budget)^theta only above the budget (hinge, default) "
                        "or always, as in the HALOC paper (paper)")
    s.add_argument("--no-cuda-graphs", action="store_true",
                   help="on a GPU, run the sampled candidates eagerly instead of replaying CUDA graphs "
                        "(same arithmetic, more host work per step)")


# ---------------------------------------------------------------------------------------
# budget, data, base model


def resolve_run_budget(args: argparse.Namespace) -> tuple[str, str]:
    """(metric, budget text) from the ``--budget-*`` flags and ``--metric``.

    At most one budget flag; ``--metric`` must agree with it. Without a flag the budget is
    :data:`DEFAULT_BUDGET` of ``--metric`` (energy by default).
    """
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


def check_run_inputs(args: argparse.Namespace, metric: str, budget_text: str, out: Path) -> Any:
    """Fail fast, before any training or table build, on inputs a user got wrong.

    Checks the model name, ``--batch``, ``--base`` and ``--table`` paths, the budget's syntax, and, when
    a table will have to be built, that the backend can be created for ``--arch`` (the arch,
    energy table and constraints parse; a GPU backend finds its device; Timeloop is on PATH).
    Nothing is written. Returns the parsed :class:`~haloc_hw.search.budget.Budget`.
    """
    from haloc_hw.cost.backends import BackendContext, create_backend
    from haloc_hw.models import MODEL_NAMES
    from haloc_hw.search.budget import parse_budget
    from haloc_hw.spec.shipped import resolve_spec_path

    if args.model not in MODEL_NAMES:
        raise HalocError(f"unknown model '{args.model}'", key="--model", fix=f"use one of {', '.join(MODEL_NAMES)}")
    if args.batch < 1:
        raise HalocError(f"--batch must be at least 1, got {args.batch}", key="--batch", fix="use a positive batch")
    if args.base is not None and not Path(args.base).exists():
        raise HalocError("base model not found", file=args.base, key="--base",
                         fix="pass a run folder or model.pt written by 'haloc-hw train', or leave --base out")
    budget = parse_budget(budget_text, metric)
    table_path = args.table or out / "table.sqlite"
    if not table_path.exists():
        arch = resolve_spec_path(args.arch, key="--arch")
        create_backend(args.backend, args, BackendContext(arch_path=arch, out_dir=table_path.parent, jobs=1))
    return budget


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[None]:
    """Copy the run's log records (INFO and up, whatever ``-v`` says) into ``path`` while the block runs.

    The root logger is lowered to INFO for the file's sake; console handlers without a level
    of their own get the old threshold meanwhile, so the terminal shows what ``-v`` asked for.
    """
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    old_level = root.level
    quieted = []
    if old_level > logging.INFO:
        quieted = [h for h in root.handlers if h.level == logging.NOTSET]
        for h in quieted:
            h.setLevel(old_level)
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
        for h in quieted:
            h.setLevel(logging.NOTSET)


def table_candidates(table: Any) -> dict[str, list[tuple[int, int]]]:
    """The rank candidates of every decomposable layer of ``table`` that has any (what search and baselines choose from)."""
    found = {n: table.candidates(n) for n in table.decomposable_layers()}
    return {n: c for n, c in found.items() if c}


def prepare_data(args: argparse.Namespace, *, echo: Echo = log.info) -> Any:
    """The run's :class:`~haloc_hw.data.DataBundle`.

    ``--data`` when given; else Fashion-MNIST from the local copy when present, else
    synthetic data, both on :data:`DEMO_SUBSET` images unless ``--subset`` says otherwise,
    so a bare command finishes in minutes.
    """
    from haloc_hw.data import build_data

    common = dict(batch_size=args.batch, val_fraction=args.val_fraction, seed=args.seed, device=args.device)
    if args.data is not None:
        return build_data(args.data, args.data_root, subset=args.subset, **common)
    subset = args.subset or DEMO_SUBSET
    try:
        return build_data("fashion-mnist", args.data_root, subset=subset, download=False, **common)
    except HalocError as err:
        echo(f"Fashion-MNIST not found ({err.message}); using synthetic data")
        return build_data("synthetic", subset=subset, **common)


def load_or_train_base(args: argparse.Namespace, data: Any, out: Path, *,
                       echo: Echo = log.info) -> tuple[Any, dict[str, Any]]:
    """The uncompressed model to compress, and what ``config.yaml`` records about it.

    ``--base`` (checked against ``--model`` and the data), else ``OUT/base`` from an earlier
    start, else a short training run (``--epochs-base``) into ``OUT/base`` (resumed when
    its checkpoint exists).
    """
    import torch

    from haloc_hw.export import MODEL_FILE, load_compressed, save_run_model
    from haloc_hw.models import build_model
    from haloc_hw.train import CHECKPOINT_NAME, TrainConfig, train

    base_path = args.base
    if base_path is None and (out / "base" / MODEL_FILE).exists():
        base_path = out / "base"
        echo(f"base model: reusing {base_path / MODEL_FILE}")
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
    echo(f"no --base given: training {args.model} for {args.epochs_base} epoch(s) into {out / 'base'}")
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


# ---------------------------------------------------------------------------------------
# cost table


def build_cost_table(args: argparse.Namespace, arch_path: Path, layers: list[Any], data: Any, path: Path, *,
                     strict: bool | str = True) -> Any:
    """Build (or complete) the cost table of ``layers`` on ``arch_path`` with ``--backend``.

    Candidates are :func:`~haloc_hw.decompose.rank_candidates` at ``--step``; the metadata
    records the model, data, input size and the arch file's hash. ``strict`` as in
    :func:`~haloc_hw.cost.table.build_table` (the sweep passes ``False`` to learn which
    layers an array cannot map).
    """
    from haloc_hw.cost.backends import BackendContext, create_backend, get_backend_spec
    from haloc_hw.cost.executors import make_executor
    from haloc_hw.cost.table import build_table
    from haloc_hw.decompose import rank_candidates

    priced_on = arch_path if get_backend_spec(args.backend).needs_arch else None  # a GPU table uses no arch file
    executor = make_executor(args.jobs)
    try:
        backend = create_backend(args.backend, args, BackendContext(arch_path=arch_path, out_dir=path.parent,
                                                                     jobs=executor.workers))
        return build_table(
            layers, backend, path,
            candidates_fn=lambda info: rank_candidates(info.shape, step=args.step),
            executor=executor, progress=not args.no_progress, strict=strict,
            # the gpu backend times every workload at the run's batch (a GPU's latency per image
            # depends on it); the other backends price one image
            metadata={"model": args.model, "dataset": data.name, "input_size": list(data.input_size),
                      "batch": args.batch if args.backend == "gpu" else 1,
                      "arch_path": priced_on and str(priced_on), "arch_sha256": priced_on and file_sha256(priced_on),
                      "candidates": {"step": args.step, "equal": True, "max_macs_ratio": None}},
        )
    finally:
        executor.close()


def load_or_build_table(args: argparse.Namespace, model: Any, data: Any, out: Path, build: bool = True, *,
                        echo: Echo = log.info) -> tuple[Any, Path]:
    """The run's cost table and its path: ``--table`` (built there when missing) or ``OUT/table.sqlite``.

    ``build=False`` opens an existing ``OUT/table.sqlite`` as it is (the non-zero ranks of a
    distributed search read what rank 0 built). The table must fit the model: see
    :func:`check_table_fits`.
    """
    from haloc_hw.cost.table import CostTable
    from haloc_hw.spec.shipped import resolve_spec_path
    from haloc_hw.workload import extract_shapes

    layers = extract_shapes(model, data.input_size, 1)
    path = args.table or out / "table.sqlite"
    if path.exists() and (args.table is not None or not build):
        table = CostTable.open(path)
    else:
        arch = resolve_spec_path(args.arch, key="--arch")
        echo(f"building the cost table {path} ({args.backend} backend, {arch})")
        table = build_cost_table(args, arch, layers, data, path)
    check_table_fits(table, layers, path)
    return table, path


def check_table_fits(table: Any, layers: list[Any], path: Path) -> None:
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


def run_config(command: str, args: argparse.Namespace, *, data: Any, table: Any, table_path: Path,
               base_info: Mapping[str, Any], metric: str, budget_text: str, method: str | None = None,
               search: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.yaml`` of a run: what was run on what, enough to repeat it."""
    from haloc_hw import __version__

    config: dict[str, Any] = {"command": command}
    if method is not None:
        config["method"] = method
    config.update({
        "haloc_hw_version": __version__, "model": args.model, "data": data.name,
        "data_root": None if args.data_root is None else str(args.data_root), "subset": args.subset,
        # the table's own arch and backend: a --table built elsewhere (a GPU latency table, say)
        # was not priced on --arch, whatever its default
        "input_size": list(data.input_size), "arch": table.metadata.get("arch_path", args.arch),
        "backend": table.metadata.get("backend", args.backend),
        "table": {"path": str(table_path), "sha256": file_sha256(table_path),
                  "metadata": {k: v for k, v in table.metadata.items() if k != "backend_fingerprint"}},
        "base": dict(base_info), "budget": {"metric": metric, "value": budget_text},
    })
    if search is not None:
        config["search"] = dict(search)
    config.update({
        "finetune": {"epochs": args.epochs_finetune, "lr": args.lr_finetune},
        "batch": args.batch, "seed": args.seed, "device": str(data.device),
    })
    return config


# ---------------------------------------------------------------------------------------
# after the ranks: fine-tune, evaluate, export


def available_metrics(table: Any) -> list[str]:
    """The metrics every original layer of ``table`` has a value for."""
    out = []
    for m in METRICS:
        try:
            table.model_cost({}, m)
        except (HalocError, TypeError, ValueError):
            continue
        out.append(m)
    return out


def layer_costs(table: Any, ranks: Mapping[str, tuple[int, int]], metrics: list[str]) -> dict[str, Any]:
    """Per layer: its rank (``None`` when kept) and original / compressed cost per metric."""
    rows = {}
    for name in table.layers():
        row: dict[str, Any] = {"rank": list(ranks[name]) if name in ranks else None}
        for m in metrics:
            original = table.original_cost(name, m)
            row[f"original_{m}"] = original
            row[f"compressed_{m}"] = table.cost(name, *ranks[name], m) if name in ranks else original
        rows[name] = row
    return rows


def finish_run(out: Path, *, base: Any, compressed: Any, data: Any, table: Any, plan: Any,
               model_name: str, epochs: int, lr: float, batch: int, seed: int, onnx: bool = True,
               progress: bool = True, budget_text: str | None = None,
               extra_metrics: Mapping[str, Any] | None = None,
               distill: tuple[float, float] | None = None) -> dict[str, Any]:
    """From a :class:`~haloc_hw.search.plan.RankPlan` and its compressed model to a finished run folder.

    Fine-tunes ``compressed`` into ``out/finetune`` (resumed when its checkpoint exists),
    evaluates both models on the test split, counts MACs and parameters, writes
    ``model.pt`` (+ ``model.onnx`` unless ``onnx=False``), checks that the saved model
    reloads to the same outputs, and writes ``metrics.json``, which it returns.
    ``budget_text`` overrides ``plan.budget_text`` in ``metrics.json``. ``distill`` ``(T, alpha)``
    distils from ``base`` during fine-tuning (the same for every method).
    """
    import copy

    import torch

    from haloc_hw.export import load_compressed, save_run_model
    from haloc_hw.metrics import count_flops_params
    from haloc_hw.train import CHECKPOINT_NAME, TrainConfig, evaluate, fine_tune

    temperature, alpha = distill if distill is not None else (None, 0.5)
    ft = fine_tune(compressed, data,
                   TrainConfig.for_fine_tune(epochs=epochs, lr=lr, batch_size=batch, seed=seed,
                                             distill_temperature=temperature, distill_alpha=alpha),
                   out_dir=out / "finetune", resume=(out / "finetune" / CHECKPOINT_NAME).exists(),
                   progress=progress, teacher=copy.deepcopy(base) if distill is not None else None)
    device = data.device
    base_eval = evaluate(base.to(device), data.test, device)
    comp_eval = evaluate(compressed, data.test, device)
    base_macs, base_params = count_flops_params(base, data.input_size)
    comp_macs, comp_params = count_flops_params(compressed, data.input_size)
    metrics_avail = available_metrics(table)
    ranks = plan.ranks
    totals = {m: {"original": table.model_cost({}, m), "compressed": table.model_cost(ranks, m)} for m in metrics_avail}
    metric = plan.metric
    metrics: dict[str, Any] = {
        "model": model_name, "data": data.name,
        "top1": {"original": base_eval["top1"], "compressed": comp_eval["top1"]},
        "loss": {"original": base_eval["loss"], "compressed": comp_eval["loss"]},
        "macs": {"original": base_macs, "compressed": comp_macs},
        "params": {"original": base_params, "compressed": comp_params},
        "table_cost": totals,
        "budget": {"metric": metric, "value": plan.budget,
                   "text": plan.budget_text if budget_text is None else budget_text, "met": plan.met,
                   "repaired": plan.repaired, "note": plan.note},
        "finetune_epochs": len(ft.history),
        "distill": None if distill is None else {"temperature": distill[0], "alpha": distill[1]},
        "layers": layer_costs(table, ranks, metrics_avail),
        **dict(extra_metrics or {}),
    }
    saved = save_run_model(out, compressed, model_name=model_name, num_classes=data.num_classes,
                           in_channels=data.in_channels, input_size=data.input_size, ranks=ranks, onnx=onnx,
                           extra={"top1": comp_eval["top1"], "metric": metric, "budget": plan.budget,
                                  "table_cost": totals[metric]["compressed"] if metric in totals else None})
    reloaded = load_compressed(out)
    x = next(iter(data.test))[0][:4].cpu()
    with torch.no_grad():
        same = torch.allclose(reloaded(x), compressed.cpu().eval()(x), atol=1e-4, rtol=1e-4)
    metrics["reload_matches"] = bool(same)
    metrics["onnx"] = None if saved.get("onnx") is None else str(saved["onnx"])
    write_json_atomic(out / "metrics.json", metrics)
    log.info("run finished in %s: top-1 %.2f%% -> %.2f%%", out, base_eval["top1"], comp_eval["top1"])
    return metrics


def summary_lines(plan: Any, metrics: Mapping[str, Any], out: Path) -> list[str]:
    """The end-of-run summary: per-layer ranks and costs, model totals against the budget, top-1."""
    metric = plan.metric
    rows = [("layer", "rank (r1,r2)", "p", f"original {metric}", f"compressed {metric}", "ratio")]
    for layer in plan.layers:
        rows.append((layer.name, f"({layer.r1},{layer.r2})" + ("*" if layer.repaired else ""), f"{layer.probability:.2f}",
                     f"{layer.original_cost:.4g}", f"{layer.cost:.4g}",
                     f"{layer.cost / layer.original_cost:.2f}" if layer.original_cost else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    t = metrics["top1"]
    lines.append(f"\nmodel {metric}: {plan.original_total:.4g} -> {plan.total_cost:.4g} "
                 f"({plan.total_cost / plan.original_total:.2f}x; budget {plan.budget:.4g}, "
                 f"{'met' if plan.met else 'NOT met'}{', repaired' if plan.repaired else ''})")
    lines.append(f"top-1: {t['original']:.2f}% -> {t['compressed']:.2f}%   MACs: {metrics['macs']['original']:,} -> "
                 f"{metrics['macs']['compressed']:,}   params: {metrics['params']['original']:,} -> "
                 f"{metrics['params']['compressed']:,}")
    if plan.repaired:
        lines.append("* moved to a cheaper candidate by the budget repair (see ranks.json)")
    lines.append(f"run folder: {out}")
    return lines


def print_summary(plan: Any, metrics: Mapping[str, Any], out: Path, *, echo: Echo = log.info) -> None:
    """Show :func:`summary_lines` (the commands call this last)."""
    for line in summary_lines(plan, metrics, out):
        echo(line)
