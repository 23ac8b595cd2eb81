"""``haloc-hw train`` (a baseline model before compression) and ``haloc-hw evaluate`` (any saved run).

``train`` writes into ``--out``: ``config.yaml`` (everything needed to rerun it),
``checkpoint.pt`` and ``history.json`` after every epoch, then ``model.pt`` / ``model.onnx``
(see :mod:`haloc_hw.export`) and ``metrics.json`` (test top-1, FLOPs = MACs, parameters).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError

_DEFAULT_EVAL_BATCH = 512


def _add_data_args(p: argparse.ArgumentParser, batch_default: int) -> None:
    p.add_argument("--data", required=True, metavar="NAME",
                   help="fashion-mnist | cifar10 | imagenet | synthetic")
    p.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                   help="dataset folder (Fashion-MNIST IDX files, cifar-10-batches-py, or ImageNet train/ val/)")
    p.add_argument("--batch", type=int, default=batch_default, help=f"batch size (default {batch_default})")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="use a seeded random N training (and at most N test) images")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: cuda when available)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (ImageNet only)")
    p.add_argument("--no-download", action="store_true", help="never try to download Fashion-MNIST")


def register(subparsers: argparse._SubParsersAction) -> None:
    from haloc_hw.train import COMPILE_MODES, SCHEDULES, TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser("train", help="train a model from scratch (the baseline to compress)",
                              description="Train a model from scratch with the paper's recipe; writes config.yaml, "
                              "checkpoint.pt, history.json, model.pt, model.onnx and metrics.json into --out.")
    p.add_argument("--model", required=True, help="model name, e.g. resnet20, vgg16, resnet18, mobilenet_v2")
    _add_data_args(p, d.batch_size)
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"initial learning rate (default {d.lr})")
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help=f"step: lr x{d.gamma} every --step-size epochs; cosine: to 0 over --epochs")
    p.add_argument("--step-size", type=int, default=d.step_size, help=f"default {d.step_size}")
    p.add_argument("--gamma", type=float, default=d.gamma, help=f"default {d.gamma}")
    p.add_argument("--momentum", type=float, default=d.momentum, help=f"Nesterov momentum (default {d.momentum})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="hold this fraction of the training set out of training (default 0: train on all)")
    p.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    p.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA instead of bf16 autocast")
    p.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    p.add_argument("--compile", choices=[m for m in COMPILE_MODES if m], default=None,
                   help="CUDA: torch.compile the training forward (reduce-overhead = CUDA graphs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run directory")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser("evaluate", help="test top-1 of a saved model (model.pt of a run directory)",
                              description="Rebuild a saved model (no search code) and report its test top-1, "
                              "MACs and parameters on a dataset.")
    e.add_argument("--run", type=Path, required=True, metavar="DIR", help="run directory (or its model.pt)")
    _add_data_args(e, _DEFAULT_EVAL_BATCH)
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from haloc_hw import __version__
    from haloc_hw.data import build_data
    from haloc_hw.export import MODEL_FILE, save_run_model
    from haloc_hw.fileio import write_json_atomic, write_yaml_atomic
    from haloc_hw.metrics import count_flops_params
    from haloc_hw.models import build_model
    from haloc_hw.runfolder import RunFolder
    from haloc_hw.train import CHECKPOINT_NAME, TrainConfig, train

    out: Path = args.out
    if not args.resume and ((out / CHECKPOINT_NAME).exists() or (out / MODEL_FILE).exists()):
        raise HalocError("the directory already holds a training run", file=out, key="--out",
                         fix="pass --resume to continue it, or choose another --out")
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, schedule=args.schedule, step_size=args.step_size, gamma=args.gamma,
        amp=not args.no_amp, seed=args.seed, compile=args.compile,
    )
    cfg.validate()
    data = build_data(
        args.data, args.data_root, batch_size=args.batch, val_fraction=args.val_fraction, seed=args.seed,
        subset=args.subset, device=args.device, num_workers=args.workers, augment=not args.no_augment,
        download=not args.no_download,
    )
    torch.manual_seed(args.seed)  # model initialisation
    model = build_model(args.model, num_classes=data.num_classes, in_channels=data.in_channels)
    config: dict[str, Any] = {
        "command": "train",
        "haloc_hw_version": __version__,
        "model": args.model,
        "data": data.name,
        "data_root": None if args.data_root is None else str(args.data_root),
        "subset": args.subset,
        "val_fraction": args.val_fraction,
        "augment": not args.no_augment,
        "device": str(data.device),
        "input_size": list(data.input_size),
        "train": cfg.to_dict(),
    }
    write_yaml_atomic(RunFolder(out).config, config)
    result = train(model, data, cfg, out_dir=out, resume=args.resume, progress=not args.no_progress)
    macs, params = count_flops_params(model, data.input_size)
    final = result.history[-1] if result.history else {}
    metrics = {
        "model": args.model,
        "data": data.name,
        "top1": final.get("test_acc"),
        "test_loss": final.get("test_loss"),
        "best_top1": result.best_top1,
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "train_seconds": sum(r["seconds"] for r in result.history),
        "macs": macs,
        "flops": macs,
        "flops_convention": "FLOPs = MACs (one multiply-accumulate per FLOP), conv + linear layers only",
        "params": params,
        "input_size": list(data.input_size),
    }
    save_run_model(out, model, model_name=args.model, num_classes=data.num_classes, in_channels=data.in_channels,
                   input_size=data.input_size, ranks={}, extra={"top1": metrics["top1"], "data": data.name},
                   onnx=not args.no_onnx)
    write_json_atomic(RunFolder(out).metrics, metrics)
    top1 = "n/a" if metrics["top1"] is None else f"{metrics['top1']:.2f}%"
    print(f"{args.model} on {data.name}: test top-1 {top1} after {metrics['epochs']} epochs; "
          f"{macs / 1e6:.2f}M MACs, {params / 1e6:.3f}M params -> {out}")
    return 0


def _check_ranks_file(run: Path, saved: dict[str, Any]) -> None:
    """A run folder's ``ranks.json`` must say what ``model.pt`` holds: evaluate reads model.pt alone, so say when they part."""
    from haloc_hw.runfolder import RunFolder

    folder = RunFolder(run)
    if not saved or not (folder.config.is_file() or folder.metrics.is_file()):
        return  # an uncompressed model, or a bare model folder: nothing to agree with
    if not folder.ranks.is_file():
        raise HalocError("the run folder lacks ranks.json (model.pt still holds the ranks it was saved with)",
                         file=folder.ranks, key="--run",
                         fix=f"restore ranks.json, or pass --run {run / 'model.pt'} to evaluate the saved model alone")
    try:
        layers = json.loads(folder.ranks.read_text())["layers"]
        listed = {n: [int(v["r1"]), int(v["r2"])] for n, v in layers.items()}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HalocError(f"cannot read ranks.json ({err.__class__.__name__})", file=folder.ranks, key="layers",
                         fix="restore the file the run wrote") from None
    saved_pairs = {n: [int(a), int(b)] for n, (a, b) in saved.items()}
    if listed != saved_pairs:
        differ = sorted(set(listed) ^ set(saved_pairs) | {n for n in listed if n in saved_pairs and listed[n] != saved_pairs[n]})
        shown = ", ".join(f"{n} {tuple(listed.get(n) or ()) or '-'} vs {tuple(saved_pairs.get(n) or ()) or '-'}"
                          for n in differ[:4])
        raise HalocError(f"ranks.json does not match model.pt ({shown}; ranks.json vs model.pt)", file=folder.ranks,
                         key=differ[0], fix="restore ranks.json (evaluate runs model.pt), or re-run the search")


def run_evaluate(args: argparse.Namespace) -> int:
    from haloc_hw.data import build_data
    from haloc_hw.export import load_compressed
    from haloc_hw.metrics import count_flops_params
    from haloc_hw.train import evaluate

    data = build_data(args.data, args.data_root, batch_size=args.batch, val_fraction=0.0, subset=args.subset,
                      device=args.device, num_workers=args.workers, augment=False, download=not args.no_download)
    model = load_compressed(args.run, map_location=data.device)
    info = model.haloc_info
    if Path(args.run).is_dir():
        _check_ranks_file(Path(args.run), info.get("ranks") or {})
    if info["num_classes"] != data.num_classes or info["in_channels"] != data.in_channels:
        raise HalocError(
            f"the model expects {info['in_channels']} input channels and {info['num_classes']} classes, "
            f"{data.name} has {data.in_channels} and {data.num_classes}", file=args.run, key="--data",
            fix="evaluate on the dataset the model was trained for")
    res = evaluate(model, data.test, data.device)
    macs, params = count_flops_params(model, data.input_size)
    out = {"run": str(args.run), "model": info["model_name"], "data": data.name, "top1": res["top1"],
           "loss": res["loss"], "samples": res["samples"], "macs": macs, "flops": macs, "params": params,
           "decomposed_layers": len(info["ranks"])}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{info['model_name']} ({len(info['ranks'])} decomposed layers) on {data.name}: "
              f"top-1 {res['top1']:.2f}% over {res['samples']} images, loss {res['loss']:.4f}; "
              f"{macs / 1e6:.2f}M MACs, {params / 1e6:.3f}M params")
    return 0
