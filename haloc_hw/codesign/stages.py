"""The training side of a co-design run: data, the base model, and the full HALOC search on one point.

These call the same library functions as ``haloc-hw search`` (:class:`~haloc_hw.search.HalocSearch`,
:func:`haloc_hw.pipeline.finish_run`), with typed settings from
:class:`~haloc_hw.codesign.config.CodesignConfig`, so a chosen point's run folder reads like any
search run (``ranks.json``, ``metrics.json``, ``model.pt``) and runs on the GPU when there is
one, as today's search does. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from haloc_hw.codesign.config import CodesignConfig
from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)


def prepare_data(cfg: CodesignConfig) -> Any:
    """The run's data: ``cfg.data`` when given, else local Fashion-MNIST, else synthetic (1000 images)."""
    from haloc_hw.data import build_data

    common = dict(batch_size=cfg.batch, val_fraction=cfg.val_fraction, seed=cfg.seed, device=cfg.device)
    if cfg.data is not None:
        return build_data(cfg.data, cfg.data_root, subset=cfg.subset, **common)
    try:
        return build_data("fashion-mnist", cfg.data_root, subset=cfg.subset or 1000, download=False, **common)
    except HalocError as err:
        log.info("Fashion-MNIST not found (%s); using synthetic data", err.message)
        return build_data("synthetic", subset=cfg.subset or 1000, **common)


def base_model(cfg: CodesignConfig, data: Any, out: Path) -> tuple[Any, dict[str, Any]]:
    """``cfg.base``, else ``OUT/base`` from an earlier start, else a short training into ``OUT/base``."""
    import torch

    from haloc_hw.export import MODEL_FILE, load_compressed, save_run_model
    from haloc_hw.models import build_model
    from haloc_hw.train import CHECKPOINT_NAME, TrainConfig, train

    path = cfg.base if cfg.base is not None else (out / "base" if (out / "base" / MODEL_FILE).exists() else None)
    if path is not None:
        model = load_compressed(path)
        info = getattr(model, "haloc_info", {})
        if info.get("model_name", cfg.model) != cfg.model:
            raise HalocError(f"base model is a {info.get('model_name')}, not a {cfg.model}", file=path, key="--model",
                             fix=f"pass --model {info.get('model_name')}")
        if info.get("ranks"):
            raise HalocError("the base model is already compressed", file=path, key="--base",
                             fix="pass the uncompressed model")
        return model.train(), {"path": str(path), "trained_here": path == out / "base"}
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels)
    tcfg = TrainConfig(epochs=cfg.epochs_base, batch_size=cfg.batch, lr=0.05, schedule="cosine", seed=cfg.seed,
                       weight_decay=5e-4)
    result = train(model, data, tcfg, out_dir=out / "base", resume=(out / "base" / CHECKPOINT_NAME).exists(),
                   progress=cfg.progress)
    save_run_model(out / "base", model, model_name=cfg.model, num_classes=data.num_classes,
                   in_channels=data.in_channels, input_size=data.input_size, ranks={}, onnx=False,
                   extra={"top1": result.final_top1})
    return model, {"path": str(out / "base"), "trained_here": True, "top1": result.final_top1}


def haloc_search(cfg: CodesignConfig, data: Any, model: Any, table_path: Path, out: Path) -> dict[str, Any]:
    """The full HALOC search + fine-tuning of ``model`` on one point's table into ``out``; its ``metrics.json``.

    A finished run (``metrics.json`` present) is read back, not repeated; an interrupted one
    resumes from its checkpoint.
    """
    import copy
    import json

    from haloc_hw import pipeline
    from haloc_hw.cost.table import CostTable
    from haloc_hw.search import HalocSearch, SearchConfig, Supernet
    from haloc_hw.search.search import CHECKPOINT_NAME
    from haloc_hw.train import seed_everything

    from haloc_hw.runfolder import RunFolder

    folder = RunFolder(out)
    if folder.metrics.is_file() and folder.ranks.is_file():
        return json.loads(folder.metrics.read_text())
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    table = CostTable.open(table_path)
    candidates = pipeline.table_candidates(table)
    scfg = SearchConfig(epochs=cfg.epochs_search, warmup_epochs=min(cfg.warmup_epochs, cfg.epochs_search),
                        budget=cfg.budget, metric=cfg.metric, seed=cfg.seed, device=str(data.device),
                        progress=cfg.progress)
    base = copy.deepcopy(model)
    supernet = Supernet(copy.deepcopy(model), candidates)
    with pipeline.run_log(folder.log_file("search")):
        plan = HalocSearch(scfg).run(supernet, data, table, out, resume=(out / CHECKPOINT_NAME).exists(),
                                     table_source=str(table_path))
        compressed = supernet.export_compressed(plan.ranks)
        del supernet
        return pipeline.finish_run(out, base=base, compressed=compressed, data=data, table=table, plan=plan,
                                   model_name=cfg.model, epochs=cfg.epochs_finetune, lr=cfg.lr_finetune,
                                   batch=cfg.batch, seed=cfg.seed, onnx=False, progress=cfg.progress,
                                   budget_text=cfg.budget)
