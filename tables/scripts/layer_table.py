"""Build a cost table for chosen layers of a model with every (r1, r2) pair (unequal ranks).

The default tables hold r1 = r2 only; the heat map over (r1, r2) (``haloc-hw report
heatmap``) needs unequal pairs, which for a whole ResNet-18 would be thousands of entries.
This builds them for a few layers only, through the same cost-table code as ``haloc-hw tables``.

    PYTHONPATH=. python3 tables/scripts/layer_table.py --model resnet18 --layers layer3.1.conv1 \
        --step 16 --dtype bf16 --batch 128 --out tables/resnet18_layer3_unequal_bf16/resnet18_layer3_unequal_bf16.sqlite
"""

from __future__ import annotations

import argparse
from pathlib import Path

from haloc_hw.cost.gpu import GpuCostModel
from haloc_hw.cost.table import build_table
from haloc_hw.decompose import rank_candidates
from haloc_hw.models import build_model
from haloc_hw.workload import extract_shapes, parse_input_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--input-size", default="3,224,224")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--layers", required=True, help="comma-separated layer names")
    parser.add_argument("--step", type=int, default=16)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    size = parse_input_size(args.input_size)
    wanted = args.layers.split(",")
    layers = [info for info in extract_shapes(build_model(args.model, num_classes=args.num_classes), size, args.batch)
              if info.name in wanted]
    missing = set(wanted) - {info.name for info in layers}
    if missing:
        raise SystemExit(f"unknown layers: {sorted(missing)}")
    backend = GpuCostModel(device=args.device, dtype=args.dtype, batch=args.batch, warmup=args.warmup, repeats=args.repeats,
                           progress=False)
    table = build_table(
        layers, backend, args.out, progress=False,
        candidates_fn=lambda info: rank_candidates(info.shape, step=args.step, equal=False),
        metadata={"model": args.model, "input_size": list(size), "batch": args.batch, "num_classes": args.num_classes,
                  "layers_subset": wanted, "candidates": {"step": args.step, "equal": False}},
    )
    table.to_csv(args.out.with_suffix(".csv"))
    print(f"{table.path}: {table.build_report.entries} entries in {table.build_report.seconds:.1f} s")


if __name__ == "__main__":
    main()
