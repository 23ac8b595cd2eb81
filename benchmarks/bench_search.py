"""Search epoch time (and peak memory on CUDA) against a plain training epoch of the uncompressed model.

Both read the same training images once per epoch at the same batch size: the plain epoch
trains on all of them; the search epoch makes weight steps on the weight-train part and
architecture steps on the arch-val part (``--val-fraction``, the CLI's default 0.2), spread
as ``--arch-steps`` says (default: one per validation batch). The weight-only (warm-up)
epoch is reported too. Costs come from an in-memory table priced by MACs: timing does not
depend on the cost values, nor on the image contents (synthetic data of the requested shape,
or ``--data fashion-mnist``).

    python benchmarks/bench_search.py --model resnet20 --batch 128 --samples 60000 --device cuda

Prints the per-epoch seconds and the ratios search / plain.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from haloc_hw.data import build_data  # noqa: E402
from haloc_hw.decompose import rank_candidates  # noqa: E402
from haloc_hw.models import build_model  # noqa: E402
from haloc_hw.search import HalocSearch, SearchConfig, Supernet  # noqa: E402
from haloc_hw.search.search import ARCH_STEPS  # noqa: E402
from haloc_hw.workload import extract_shapes, tucker2_triple  # noqa: E402


class MacsCosts:
    """CostLookup priced by MACs (every metric): enough to drive the search for timing."""

    def __init__(self, layers) -> None:
        self.info = {layer.name: layer for layer in layers}

    def layers(self):
        return list(self.info)

    def candidates(self, layer):
        info = self.info[layer]
        return rank_candidates(info.shape) if info.decomposable else []

    def cost(self, layer, r1, r2, metric):
        return float(sum(s.macs for s in tucker2_triple(self.info[layer].shape, r1, r2)))

    def original_cost(self, layer, metric):
        return float(self.info[layer].shape.macs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_epochs(model, data, device, epochs: int) -> tuple[list[float], int]:
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for epoch in range(epochs):
        data.train.set_epoch(epoch)
        _sync(device)
        t0 = time.perf_counter()
        for x, y in data.train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return times, peak


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
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (the first of each kind is a warm-up)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

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

    plain, plain_peak = plain_epochs(model, full, device, args.epochs)
    supernet = Supernet(model.cpu(), candidates)
    n_cands = sum(len(c) for c in candidates.values())
    with tempfile.TemporaryDirectory() as tmp:
        # epoch 1: weight-only warm-up; epochs 2..: weight + architecture steps
        cfg = SearchConfig(epochs=args.epochs + 1, warmup_epochs=1, budget=1.0, metric="cycles", device=str(device),
                           arch_steps=args.arch_steps, progress=False)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        search = HalocSearch(cfg)
        search.run(supernet, split, costs, tmp)
        search_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        history = json.loads((Path(tmp) / "search_history.json").read_text())
    secs = [e["seconds"] for e in history["epochs"]]
    warm, full_epochs = secs[0], secs[2:] or secs[1:]
    plain_t = min(plain[1:] or plain)
    search_t = min(full_epochs)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"model {args.model}, data {args.data} {size}, {full.train.num_samples} images, batch {args.batch}; "
          f"plain {len(full.train)} batches/epoch; search {len(split.train)} weight + "
          f"{history['epochs'][-1]['arch_steps']} arch steps/epoch ({args.arch_steps}); "
          f"{len(candidates)} searched layers, {n_cands} candidates")
    print(f"plain training epoch      {plain_t:8.3f} s")
    print(f"search weight-only epoch  {warm:8.3f} s  ratio {warm / plain_t:5.2f}  (first epoch, includes warm-up)")
    print(f"search epoch (w + alpha)  {search_t:8.3f} s  ratio {search_t / plain_t:5.2f}")
    if device.type == "cuda":
        print(f"peak memory: plain {plain_peak / 2**20:.1f} MiB, search {search_peak / 2**20:.1f} MiB, "
              f"ratio {search_peak / plain_peak:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
