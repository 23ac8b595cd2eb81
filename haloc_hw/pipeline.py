"""The steps every compression run shares: ``haloc-hw search``, ``haloc-hw baseline`` and each run of ``haloc-hw sweep``.

A run is: data -> base model -> cost table -> budget -> ranks (searched, or allocated by a
baseline) -> compressed model fine-tuned, evaluated and exported. Only the ranks step
differs, so :func:`run_search` and :func:`run_baseline` share everything else, and a search
run folder and a baseline run folder are compared on equal terms by ``haloc-hw report``
(same fine-tuning recipe, same ``metrics.json`` keys, same ``model.pt`` / ``model.onnx``).

Both take a :class:`~haloc_hw.settings.RunConfig` (the CLI builds it; so does the sweep).
Everything a user can get wrong is checked before the run folder is touched
(:func:`validate_run`); what is only found during set-up (a budget below the cheapest
ranks, a table for another model, a base model of another network) undoes the set-up
(:meth:`~haloc_hw.runfolder.RunFolder.staged`). Messages for the user go through ``echo``
(the module logger by default; the CLI passes ``print``). Heavy imports (torch, the cost
backends) are made inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from haloc_hw.cost.metric import METRICS
from haloc_hw.errors import HalocError
from haloc_hw.fileio import file_sha256, write_json_atomic, write_yaml_atomic
from haloc_hw.runfolder import RunFolder
from haloc_hw.settings import DataSettings, RunConfig, config_differences

log = logging.getLogger(__name__)

Echo = Callable[[str], None]

DEMO_SUBSET = 1000


# ---------------------------------------------------------------------------------------
# checks before anything is written


def validate_run(cfg: RunConfig) -> None:
    """Fail fast, before any training, table build or file, on inputs a user got wrong.

    The model name, batch, subset, jobs and step; ``--out``; the ``--base``, ``--table`` and
    data-root paths (an existing table must open: a corrupt or foreign file is refused
    here); a resume must continue a run of the same settings; and, when a table will have
    to be built, that the backend can be created for the arch (the arch, energy table and
    constraints parse; a GPU backend finds its device; Timeloop is on PATH).
    """
    from haloc_hw.cost.build import check_backend, resolve_arch
    from haloc_hw.cost.table import CostTable
    from haloc_hw.models.registry import check_model_name

    folder = RunFolder(cfg.out)
    folder.check_writable()
    check_model_name(cfg.model)
    for key, value in (("--batch", cfg.data.batch), ("--subset", cfg.data.subset), ("--jobs", cfg.cost.jobs),
                       ("--step", cfg.cost.step)):
        if value is not None and value < 1:
            raise HalocError(f"{key} must be at least 1, got {value}", key=key, fix=f"pass a positive {key} or leave it out")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise HalocError(f"--val-fraction must be between 0 and 1, got {cfg.data.val_fraction}", key="--val-fraction",
                         fix="hold out a fraction such as 0.2")
    if cfg.data.root is not None and not Path(cfg.data.root).is_dir():
        raise HalocError("dataset folder not found", file=cfg.data.root, key="--data-root",
                         fix="pass the folder holding the dataset, or leave --data-root out")
    if cfg.base_model is not None and not Path(cfg.base_model).exists():
        raise HalocError("base model not found", file=cfg.base_model, key="--base",
                         fix="pass a run folder or model.pt written by 'haloc-hw train', or leave --base out")
    if cfg.recipe.distill is not None and cfg.base_model is None:
        raise HalocError("--distill needs the uncompressed model to distil from", key="--distill",
                         fix="pass --base RUN_DIR (a model written by haloc-hw train), or drop --distill")
    check_resume(cfg)
    table_path = Path(cfg.cost.path) if cfg.cost.path else folder.table
    if cfg.cost.path is not None and table_path.exists():
        CostTable.open(table_path)
    if not table_path.exists():
        check_backend(cfg.cost, resolve_arch(cfg.cost, cfg.arch), table_path.parent)


def check_resume(cfg: RunConfig) -> None:
    """A search folder needs ``--resume`` to continue, and a resumed run must have the same settings."""
    from haloc_hw.search.search import CHECKPOINT_NAME
    from haloc_hw.settings import RunConfig as _RunConfig

    folder = RunFolder(cfg.out)
    if cfg.command == "search" and not cfg.resume and (folder.path / CHECKPOINT_NAME).exists():
        raise HalocError("the folder already holds a search", file=folder.path, key="--out",
                         fix="pass --resume to continue it, or choose another --out")
    if not cfg.resume:
        return
    raw = folder.read_config()
    if raw is None or "cost" not in raw:
        return  # nothing to compare with (a run cut off before its settings were written)
    old = _RunConfig.from_dict(raw, source=folder.config)
    diffs = config_differences(old, cfg)
    if diffs:
        listing = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:6]) + (" ..." if len(diffs) > 6 else "")
        raise HalocError(f"--resume with other settings than the run in this folder ({listing})", file=folder.config,
                         key=diffs[0][0], fix="repeat the options of the first start, or choose another --out")


# ---------------------------------------------------------------------------------------
# budget, data, base model


def data_note(data: DataSettings) -> str:
    """How many training images a run uses, said before it starts (``--subset`` depends on ``--data``)."""
    if data.name is None:
        n = data.subset or DEMO_SUBSET
        return f"data: local Fashion-MNIST (else synthetic), {n} training images" + (
            "" if data.subset else f" (the demo default; --data NAME uses all, --subset N sets it)")
    if data.subset is None:
        return f"data: {data.name}, all training images (--subset N for fewer)"
    return f"data: {data.name}, {data.subset} training images"


def prepare_data(data: DataSettings, *, echo: Echo = log.info) -> Any:
    """The run's :class:`~haloc_hw.data.DataBundle`.

    ``data.name`` when given; else Fashion-MNIST from the local copy when present, else
    synthetic data, both on :data:`DEMO_SUBSET` images unless ``subset`` says otherwise,
    so a bare command finishes in minutes.
    """
    from haloc_hw.data import build_data

    common = dict(batch_size=data.batch, val_fraction=data.val_fraction, seed=data.seed, device=data.device)
    if data.name is not None:
        return build_data(data.name, data.root, subset=data.subset, **common)
    subset = data.subset or DEMO_SUBSET
    try:
        return build_data("fashion-mnist", data.root, subset=subset, download=False, **common)
    except HalocError as err:
        echo(f"Fashion-MNIST not found ({err.message}); using synthetic data")
        return build_data("synthetic", subset=subset, **common)


def load_base(cfg: RunConfig, data: Any, *, echo: Echo = log.info) -> tuple[Any, dict[str, Any]] | None:
    """The base model of ``--base`` (or of ``OUT/base`` from an earlier start), checked against model and data; else ``None``."""
    from haloc_hw.export import MODEL_FILE, load_compressed

    folder = RunFolder(cfg.out)
    base_path: Path | None = Path(cfg.base_model) if cfg.base_model is not None else None
    if base_path is None and (folder.base / MODEL_FILE).exists():
        base_path = folder.base
        echo(f"base model: reusing {base_path / MODEL_FILE}")
    if base_path is None:
        return None
    model = load_compressed(base_path)
    info = getattr(model, "haloc_info", {})
    if info.get("ranks"):
        raise HalocError("the base model is already compressed", file=base_path, key="--base",
                         fix="pass the uncompressed model the search starts from")
    if info.get("model_name", cfg.model) != cfg.model:
        raise HalocError(f"base model is a {info.get('model_name')}, not a {cfg.model}", file=base_path,
                         key="--model", fix=f"pass --model {info.get('model_name')}")
    if info.get("num_classes") not in (None, data.num_classes) or info.get("in_channels") not in (None, data.in_channels):
        raise HalocError("base model does not fit the data (classes or input channels differ)", file=base_path,
                         key="--data", fix="use the dataset the base model was trained on")
    return model.train(), {"path": str(base_path), "trained_here": base_path == folder.base}


def train_base(cfg: RunConfig, data: Any, *, echo: Echo = log.info) -> tuple[Any, dict[str, Any]]:
    """A short training of ``cfg.model`` into ``OUT/base`` (resumed from its checkpoint)."""
    import torch

    from haloc_hw.export import save_run_model
    from haloc_hw.models import build_model
    from haloc_hw.train import CHECKPOINT_NAME, TrainConfig, train

    where = RunFolder(cfg.out).base
    echo(f"no --base given: training {cfg.model} for {cfg.recipe.epochs_base} epoch(s) into {where}")
    torch.manual_seed(cfg.data.seed)
    model = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels)
    tcfg = TrainConfig(epochs=cfg.recipe.epochs_base, batch_size=cfg.data.batch, lr=0.05, schedule="cosine",
                       seed=cfg.data.seed, weight_decay=5e-4)
    result = train(model, data, tcfg, out_dir=where, resume=(where / CHECKPOINT_NAME).exists(), progress=cfg.progress)
    save_run_model(where, model, model_name=cfg.model, num_classes=data.num_classes, in_channels=data.in_channels,
                   input_size=data.input_size, ranks={}, onnx=False, extra={"top1": result.final_top1})
    return model, {"path": str(where), "trained_here": True, "epochs": cfg.recipe.epochs_base,
                   "top1": result.final_top1}


def table_target(cfg: RunConfig, data: Any) -> Any:
    from haloc_hw.cost.build import TableTarget

    return TableTarget(model=cfg.model, dataset=data.name, num_classes=data.num_classes,
                       input_size=tuple(data.input_size), batch=1)


def load_or_build_table(cfg: RunConfig, layers: list[Any], data: Any, build: bool = True, *,
                        echo: Echo = log.info) -> tuple[Any, Path]:
    """The run's cost table and its path: ``--table`` (built there when missing) or ``OUT/table.sqlite``.

    ``build=False`` opens an existing ``OUT/table.sqlite`` as it is (the non-zero ranks of a
    distributed search read what rank 0 built). The table must fit the model's layers.
    """
    from haloc_hw.cost.build import build_cost_table, check_table_fits, resolve_arch
    from haloc_hw.cost.table import CostTable

    path = Path(cfg.cost.path) if cfg.cost.path else RunFolder(cfg.out).table
    if path.exists() and (cfg.cost.path is not None or not build):
        table = CostTable.open(path)
    else:
        arch = resolve_arch(cfg.cost, cfg.arch)
        echo(f"building the cost table {path} ({cfg.cost.backend} backend{', ' + str(arch) if arch else ''})")
        table = build_cost_table(table_target(cfg, data), cfg.cost, arch, path, layers=layers, progress=cfg.progress)
    check_table_fits(table, layers, path)
    return table, path


def run_facts(cfg: RunConfig, *, data: Any, table: Any, table_path: Path, base_info: Mapping[str, Any]) -> dict[str, Any]:
    """What a run found, written beside its settings in ``config.yaml`` (not compared on resume)."""
    from haloc_hw import __version__

    return {
        "haloc_hw_version": __version__, "dataset": data.name, "input_size": list(data.input_size),
        # the table's own arch and backend: a --table built elsewhere (a GPU latency table, say)
        # was not priced on --arch, whatever its default
        "arch": table.metadata.get("arch_path", cfg.arch), "backend": table.metadata.get("backend", cfg.cost.backend),
        "table": {"path": str(table_path), "sha256": file_sha256(table_path),
                  "metadata": {k: v for k, v in table.metadata.items() if k != "backend_fingerprint"}},
        "base": dict(base_info), "device": str(data.device),
    }


def write_config(cfg: RunConfig, facts: Mapping[str, Any]) -> None:
    """``config.yaml``: :meth:`RunConfig.to_dict` plus :func:`run_facts`."""
    write_yaml_atomic(RunFolder(cfg.out).config, {**cfg.to_dict(), **facts})


# ---------------------------------------------------------------------------------------
# the two runs


def search_config(cfg: RunConfig, device: Any) -> Any:
    """The :class:`~haloc_hw.search.SearchConfig` of a run's search settings."""
    from haloc_hw.search import SearchConfig

    s = cfg.search
    if s is None:
        raise HalocError("a search run needs search settings", key="search")
    return SearchConfig(epochs=s.epochs, warmup_epochs=min(s.warmup_epochs, s.epochs), lr_w=s.lr_w,
                        lr_alpha=s.lr_alpha, lam=s.lam, eta=s.eta, theta=s.theta, tau=s.tau, penalty=s.penalty,
                        arch_steps=s.arch_steps, decode=s.decode, budget=cfg.budget.text, metric=cfg.budget.metric,
                        seed=cfg.data.seed, device=str(device), progress=cfg.progress, cuda_graphs=s.cuda_graphs,
                        tau_final=s.tau_final, stop_entropy=s.stop_entropy, stop_delta=s.stop_delta)


@contextlib.contextmanager
def _distributed(cfg: RunConfig) -> Iterator[tuple[RunConfig, int | None]]:
    """Under torchrun (WORLD_SIZE > 1): join the process group and pick this rank's device.

    NCCL on CUDA, gloo on CPU. Yields the config for this rank and the rank (``None`` when
    not distributed). The search then runs data-parallel; base training, table building,
    fine-tuning and export run on rank 0 only.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield cfg, None
        return
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = (cfg.data.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if want_cuda:
        torch.cuda.set_device(local)
    cfg = replace(cfg, data=replace(cfg.data, device=f"cuda:{local}" if want_cuda else "cpu"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    rank = dist.get_rank()
    if rank:
        cfg = replace(cfg, progress=False)
    try:
        yield cfg, rank
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _set_up(cfg: RunConfig, *, echo: Echo, build: bool = True) -> tuple[Any, Any, dict[str, Any], Any, Path, dict]:
    """Data, base model, table and the budget check; the base is trained only once the budget is known to be reachable."""
    from haloc_hw.models import build_model
    from haloc_hw.rankspace import resolve_budget
    from haloc_hw.train import seed_everything
    from haloc_hw.workload import extract_shapes

    seed_everything(cfg.data.seed)
    echo(data_note(cfg.data))
    data = prepare_data(cfg.data, echo=echo)
    loaded = load_base(cfg, data, echo=echo)
    shaped = loaded[0] if loaded is not None else build_model(cfg.model, num_classes=data.num_classes,
                                                              in_channels=data.in_channels)
    layers = extract_shapes(shaped, data.input_size, 1)
    table, table_path = load_or_build_table(cfg, layers, data, build=build, echo=echo)
    candidates = table_candidates(table)
    resolve_budget(cfg.budget, table, candidates, source=str(table_path))
    model, base_info = loaded if loaded is not None else train_base(cfg, data, echo=echo)
    return data, model, base_info, table, table_path, candidates


def run_search(cfg: RunConfig, *, echo: Echo = log.info) -> dict[str, Any] | None:
    """The HALOC search run of ``cfg`` into ``cfg.out``; returns its ``metrics.json`` (``None`` on a non-zero rank)."""
    from haloc_hw.search import HalocSearch, Supernet

    validate_run(cfg)
    folder = RunFolder(cfg.out)
    with _distributed(cfg) as (cfg, rank):
        if rank:  # rank 0 trains the base and builds the table; the others then read them
            _barrier()
            with run_log(folder.log_file("search", rank)):
                data, model, base_info, table, table_path, candidates = _set_up(cfg, echo=echo, build=False)
        else:
            with folder.staged() as stage, run_log(folder.log_file("search")):
                data, model, base_info, table, table_path, candidates = _set_up(cfg, echo=echo)
                scfg = search_config(cfg, data.device)
                write_config(cfg, {**run_facts(cfg, data=data, table=table, table_path=table_path,
                                               base_info=base_info), "search_config": scfg.to_dict()})
                stage.commit()
                _barrier()
                return _search(cfg, data, model, table, table_path, candidates, scfg, rank, echo)
        with run_log(folder.log_file("search", rank)):
            return _search(cfg, data, model, table, table_path, candidates, search_config(cfg, data.device), rank, echo)


def _search(cfg: RunConfig, data: Any, model: Any, table: Any, table_path: Path, candidates: Any, scfg: Any,
            rank: int | None, echo: Echo) -> dict[str, Any] | None:
    from haloc_hw.search import HalocSearch, Supernet

    supernet = Supernet(model, candidates)
    for name, why in supernet.skipped.items():
        log.info("not searched: %s (%s)", name, why)
    echo(f"searching ranks of {len(supernet.layer_names)} layers, budget {cfg.budget.text} of {cfg.budget.metric}")
    plan = HalocSearch(scfg).run(supernet, data, table, cfg.out, resume=cfg.resume, table_source=str(table_path))
    if rank:
        return None  # fine-tuning, evaluation and export run on rank 0
    compressed = supernet.export_compressed(plan.ranks)
    del supernet
    metrics = finish_run(cfg.out, base=model, compressed=compressed, data=data, table=table, plan=plan,
                         model_name=cfg.model, epochs=cfg.recipe.epochs_finetune, lr=cfg.recipe.lr_finetune,
                         batch=cfg.data.batch, seed=cfg.data.seed, onnx=cfg.recipe.onnx, progress=cfg.progress,
                         budget_text=cfg.budget.text, distill=cfg.recipe.distill)
    print_summary(plan, metrics, cfg.out, echo=echo)
    return metrics


def run_baseline(cfg: RunConfig, method: str | None = None, *, echo: Echo = log.info) -> dict[str, Any]:
    """Baseline ``method`` (default ``cfg.method``) at ``cfg``'s budget into ``cfg.out``; returns its ``metrics.json``."""
    from haloc_hw.baselines import METHODS, allocate
    from haloc_hw.decompose import decompose_model

    method = method or cfg.method
    if method not in METHODS:
        raise HalocError(f"unknown baseline method '{method}'", key="--method", fix=f"use one of {', '.join(METHODS)}")
    cfg = replace(cfg, command="baseline", method=method, search=None)
    validate_run(cfg)
    folder = RunFolder(cfg.out)
    with folder.staged() as stage, run_log(folder.log_file("baseline")):
        data, model, base_info, table, table_path, candidates = _set_up(cfg, echo=echo)
        echo(f"{method} baseline: ranks of {len(candidates)} layers, budget {cfg.budget.text} of {cfg.budget.metric}")
        result = allocate(method, table, candidates, cfg.budget, model, source=str(table_path), progress=cfg.progress)
        write_config(cfg, run_facts(cfg, data=data, table=table, table_path=table_path, base_info=base_info))
        stage.commit()
        result.plan.save(folder.ranks)
        write_json_atomic(folder.baseline, result.to_dict())
        compressed = decompose_model(model, result.ranks)
        metrics = finish_run(cfg.out, base=model, compressed=compressed, data=data, table=table, plan=result.plan,
                             model_name=cfg.model, epochs=cfg.recipe.epochs_finetune, lr=cfg.recipe.lr_finetune,
                             batch=cfg.data.batch, seed=cfg.data.seed, onnx=cfg.recipe.onnx, progress=cfg.progress,
                             extra_metrics={"method": method}, distill=cfg.recipe.distill)
        print_summary(result.plan, metrics, cfg.out, echo=echo)
        return metrics


# ---------------------------------------------------------------------------------------
# shared helpers


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
    """From a :class:`~haloc_hw.rankspace.RankPlan` and its compressed model to a finished run folder.

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
                   out_dir=RunFolder(out).finetune, resume=(RunFolder(out).finetune / CHECKPOINT_NAME).exists(),
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
    write_json_atomic(RunFolder(out).metrics, metrics)
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
