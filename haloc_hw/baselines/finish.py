"""The last steps of a run, shared by the baselines: fine-tune, evaluate, export, ``metrics.json``.

These mirror what ``haloc-hw search`` does after its search (same fine-tuning recipe, same
``metrics.json`` keys, same ``model.pt`` / ``model.onnx``), so a baseline run folder and a
search run folder are compared on equal terms by ``haloc-hw report``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from haloc_hw.fileio import write_json_atomic

log = logging.getLogger(__name__)

TABLE_METRICS = ("cycles", "energy_pJ", "latency_s", "edp")


def available_metrics(table: Any) -> list[str]:
    """The metrics every original layer of ``table`` has a value for."""
    from haloc_hw.errors import HalocError

    out = []
    for m in TABLE_METRICS:
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


def finish_run(out: Path, *, base: nn.Module, compressed: nn.Module, data: Any, table: Any, plan: Any,
               model_name: str, epochs: int, lr: float, batch: int, seed: int, onnx: bool = True,
               progress: bool = True, extra_metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune ``compressed`` into ``out/finetune``, evaluate both models, export, write ``metrics.json``."""
    from haloc_hw.export import load_compressed, save_run_model
    from haloc_hw.metrics import count_flops_params
    from haloc_hw.train import TrainConfig, evaluate, fine_tune

    ft = fine_tune(compressed, data,
                   TrainConfig.for_fine_tune(epochs=epochs, lr=lr, batch_size=batch, seed=seed),
                   out_dir=out / "finetune", resume=True, progress=progress)
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
        "budget": {"metric": metric, "value": plan.budget, "text": plan.budget_text, "met": plan.met,
                   "repaired": plan.repaired, "note": plan.note},
        "finetune_epochs": len(ft.history),
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
