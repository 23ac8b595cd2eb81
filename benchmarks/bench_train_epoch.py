"""Seconds per training epoch of ResNet-20 on Fashion-MNIST: on-device tensors vs a DataLoader.

Prints one line per measurement and the ratio (DataLoader / on-device). With ``--full N`` it
also trains N epochs (cosine schedule) on the on-device path and prints the test top-1, so
the speed is reported together with what the recipe reaches.

    python benchmarks/bench_train_epoch.py --data-root DIR [--device cuda] [--epochs 3] [--full 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from haloc_hw.data import build_data
from haloc_hw.models import build_model
from haloc_hw.train import TrainConfig, train


def epoch_seconds(keep_on_device: bool, args: argparse.Namespace, compile_mode: str | None = None) -> list[float]:
    data = build_data("fashion-mnist", args.data_root, batch_size=args.batch, val_fraction=0.0,
                      device=args.device, keep_on_device=keep_on_device, num_workers=args.workers)
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, in_channels=1)
    # eval_every beyond the run: only the last epoch evaluates, so leave it out of the medians.
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, eval_every=10**6, compile=compile_mode)
    times: list[float] = []

    def stamp(_epoch: int, _record: dict) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    start = time.perf_counter()
    train(model, data, cfg, progress=False, on_epoch_end=stamp)
    edges = [start, *times]
    return [b - a for a, b in zip(edges, edges[1:])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--full", type=int, default=0, help="also train this many epochs and report test top-1")
    p.add_argument("--compile", nargs="*", default=[], help="also time these torch.compile modes (CUDA)")
    args = p.parse_args()
    fast = epoch_seconds(True, args)
    slow = epoch_seconds(False, args)
    # The first epoch includes warm-up (cuDNN autotuning, allocator, compilation), the last the test pass.
    def steady(times: list[float]) -> float:
        return statistics.median(times[1:-1] or times)

    f, s = steady(fast), steady(slow)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device {dev}, batch {args.batch}, torch {torch.__version__}")
    print(f"on-device tensors : {f:.2f} s/epoch (epochs: {', '.join(f'{t:.2f}' for t in fast)})")
    print(f"DataLoader ({args.workers} workers): {s:.2f} s/epoch (epochs: {', '.join(f'{t:.2f}' for t in slow)})")
    print(f"ratio DataLoader / on-device: {s / f:.2f}")
    for mode in args.compile:
        c = epoch_seconds(True, args, mode)
        print(f"on-device + compile={mode}: {steady(c):.2f} s/epoch (epochs: {', '.join(f'{t:.2f}' for t in c)}); "
              f"ratio eager / compiled: {f / steady(c):.2f}")
    if args.full:
        data = build_data("fashion-mnist", args.data_root, batch_size=args.batch, val_fraction=0.0, device=args.device)
        torch.manual_seed(0)
        model = build_model("resnet20", num_classes=10, in_channels=1)
        t0 = time.perf_counter()
        res = train(model, data, TrainConfig(epochs=args.full, schedule="cosine"), progress=False)
        print(f"{args.full} epochs (lr 0.1 cosine, bf16): test top-1 {res.final_top1:.2f}% "
              f"(best {res.best_top1:.2f}% at epoch {res.best_epoch}) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
