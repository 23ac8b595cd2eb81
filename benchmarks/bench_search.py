"""Search epoch time (and peak memory on CUDA) against a plain training epoch of the uncompressed model.

Both read the same training images once per epoch at the same batch size: the plain epoch
trains on all of them; the search epoch makes weight steps on the weight-train part and
architecture steps on the arch-val part (``--val-fraction``, the CLI's default 0.2), spread
as ``--arch-steps`` says (default: one per validation batch). The weight-only (warm-up)
epoch is reported too. Costs come from an in-memory table priced by MACs: timing does not
depend on the cost values, nor on the image contents (synthetic data of the requested shape,
or ``--data fashion-mnist``).

    python benchmarks/bench_search.py --model resnet20 --batch 128 --samples 60000 --device cuda

Plain and search epochs alternate (the search resumes from its checkpoint for each one), so
each pair sees the same state of the machine: on a GPU both are bound by the host, whose
speed drifts by 10-20 % between runs. Prints the median epoch times and every pair's ratio
search / plain.

Peak memory on CUDA is that of a step: the images the loaders keep on the device are taken
out of both, and so is the plain model (with its optimiser state) from the search's peak,
because it stays on the device between the plain epochs. The search's figure adds the
CUDA-graph pools (reserved for replays, not counted by ``max_memory_allocated``) and comes
from the last search epoch, with every graph captured; the first search epochs, capture
included, are printed too (an upper bound: the pool is counted twice while it is captured).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from haloc_hw.data import build_data  # noqa: E402
from haloc_hw.models import build_model  # noqa: E402
from haloc_hw.search import HalocSearch, SearchConfig, Supernet  # noqa: E402
from haloc_hw.rankspace import MacsCosts  # noqa: E402
from haloc_hw.search.search import ARCH_STEPS  # noqa: E402
from haloc_hw.workload import extract_shapes  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainTraining:
    """The uncompressed model trained as usual (SGD, Nesterov), one timed epoch at a time."""

    def __init__(self, model, data, device) -> None:
        self.model, self.data, self.device = model.to(device).train(), data, device
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        self.epoch = 0

    def run_epoch(self) -> float:
        self.data.train.set_epoch(self.epoch)
        self.epoch += 1
        _sync(self.device)
        t0 = time.perf_counter()
        for x, y in self.data.train:
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        _sync(self.device)
        return time.perf_counter() - t0


def _peak(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


def _allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--data", default="synthetic", choices=("synthetic", "fashion-mnist"))
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--samples", type=int, default=8192, help="training images per epoch (all of them: 60000)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--arch-steps", default="per-val-batch", choices=ARCH_STEPS)
    ap.add_argument("--input-size", default="1,28,28", help="synthetic image shape C,H,W")
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3, help="timed (plain, search) epoch pairs, after a warm-up of each")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                    help="run the search's candidates eagerly (SearchConfig.cuda_graphs=False)")
    args = ap.parse_args()
    if args.epochs < 1:
        ap.error("--epochs must be at least 1")

    device = torch.device(args.device)
    size = tuple(int(v) for v in args.input_size.split(","))
    extra = dict(input_size=size, num_classes=args.num_classes) if args.data == "synthetic" else {}

    def data_with(val_fraction: float):
        return build_data(args.data, args.data_root, batch_size=args.batch, val_fraction=val_fraction, seed=0,
                          subset=args.samples, device=device, augment=False, **extra)

    full, split = data_with(0.0), data_with(args.val_fraction)
    size = split.input_size
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=split.num_classes, in_channels=size[0])
    layers = extract_shapes(model, size, 1)
    costs = MacsCosts(layers)
    candidates = {n: costs.candidates(n) for n in costs.layers() if costs.candidates(n)}

    supernet = Supernet(model, candidates)  # a copy: the plain run below trains the model itself
    n_cands = sum(len(c) for c in candidates.values())
    data_bytes = _allocated(device)  # the loaders keep the images on the device: not part of a step
    plain = PlainTraining(model, full, device)
    _reset_peak(device)
    plain.run_epoch()  # warm-up (cuDNN plans, allocator)
    plain_peak = _peak(device) - data_bytes
    plain_resident = _allocated(device) - data_bytes  # the plain model and its state, there during search epochs
    with tempfile.TemporaryDirectory() as tmp:
        history_path = Path(tmp) / "search_history.json"
        # epoch 1: weight-only warm-up; epoch 2: the first with architecture steps (warm-up of that path);
        # then one more search epoch after each plain epoch, resuming from the checkpoint (the
        # supernet keeps its CUDA graphs between runs, as it would between the epochs of one run)
        cfg = SearchConfig(epochs=2, warmup_epochs=1, budget=1.0, metric="cycles", device=str(device),
                           arch_steps=args.arch_steps, progress=False, cuda_graphs=args.cuda_graphs)
        _reset_peak(device)
        HalocSearch(cfg).run(supernet, split, costs, tmp)
        history = json.loads(history_path.read_text())
        pools = history["epochs"][-1].get("graph_pool_bytes", 0)
        first_peak = _peak(device) - data_bytes - plain_resident + pools  # counts the pool twice during capture
        plain_t, search_t = [], []
        for _ in range(args.epochs):
            plain_t.append(plain.run_epoch())
            cfg = dataclasses.replace(cfg, epochs=cfg.epochs + 1)
            _reset_peak(device)
            HalocSearch(cfg).run(supernet, split, costs, tmp, resume=True)
            history = json.loads(history_path.read_text())
            search_t.append(history["epochs"][-1]["seconds"])
        pools = history["epochs"][-1].get("graph_pool_bytes", 0)
        search_peak = _peak(device) - data_bytes - plain_resident + pools
    warm = history["epochs"][0]["seconds"]
    ratios = [s / p for s, p in zip(search_t, plain_t)]
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"model {args.model}, data {args.data} {size}, {full.train.num_samples} images, batch {args.batch}; "
          f"plain {len(full.train)} batches/epoch; search {len(split.train)} weight + "
          f"{history['epochs'][-1]['arch_steps']} arch steps/epoch ({args.arch_steps}); "
          f"{len(candidates)} searched layers, {n_cands} candidates")
    print(f"plain training epoch      {statistics.median(plain_t):8.3f} s  (median of {len(plain_t)})")
    print(f"search weight-only epoch  {warm:8.3f} s  (first epoch, includes warm-up)")
    print(f"search epoch (w + alpha)  {statistics.median(search_t):8.3f} s  (median of {len(search_t)})")
    print(f"ratio search / plain, epoch pairs run back to back: median {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}; each: {', '.join(f'{r:.2f}' for r in ratios)})")
    if device.type == "cuda":
        print(f"peak memory of a step (without the images kept on the device): plain {plain_peak / 2**20:.1f} MiB, "
              f"search {search_peak / 2**20:.1f} MiB (of which CUDA-graph pools {pools / 2**20:.1f} MiB), "
              f"ratio {search_peak / plain_peak:.2f}; first search epochs, capture included: "
              f"{first_peak / 2**20:.1f} MiB, ratio {first_peak / plain_peak:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
