"""Time ResNet-18's layer3 3x3 256->256 conv at 14x14 and some of its Tucker-2 triples.

Checks the figures that motivate measured tables (original vs r = 16/64/80, bf16 and fp32):
per dtype, the original layer, each triple run as one block (fused) and the sum of its
three parts timed alone. Writes one JSON document.

    PYTHONPATH=. python3 tables/scripts/layer3_probe.py --device cuda --out layer3.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from haloc_hw.cost.gpu import GpuCostModel
from haloc_hw.fileio import write_json_atomic
from haloc_hw.workload import ConvShape, tucker2_triple


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtypes", default="bf16,fp32,tf32")
    parser.add_argument("--ranks", default="16,32,48,64,80,96,128,160,192,224")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--modes", default="graph,eager", help="graph (CUDA graph replay) and/or eager launches")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shape = ConvShape(C=256, M=256, R=3, S=3, P=14, Q=14, N=args.batch, W=14, H=14)
    ranks = [int(r) for r in args.ranks.split(",")]
    doc: dict = {"shape": shape.key, "batch": args.batch, "modes": {}}
    for mode, dtype in [(m, d) for m in args.modes.split(",") for d in args.dtypes.split(",")]:
        model = GpuCostModel(device=args.device, dtype=dtype, batch=args.batch, warmup=args.warmup, repeats=args.repeats,
                             progress=False, cuda_graphs=mode == "graph")
        doc["fingerprint"] = model.fingerprint()
        (orig,) = model.evaluate([shape])
        triples = [tucker2_triple(shape, r, r) for r in ranks]
        fused = model.evaluate_triples(triples)
        parts = model.evaluate([s for t in triples for s in t])
        rows = {}
        for i, r in enumerate(ranks):
            part_costs = parts[3 * i : 3 * i + 3]
            rows[str(r)] = {
                "fused_ms": fused[i].latency_s * 1e3,
                "fused_p10_ms": fused[i].breakdown["p10_s"] * 1e3,
                "fused_p90_ms": fused[i].breakdown["p90_s"] * 1e3,
                "parts_ms": [c.latency_s * 1e3 for c in part_costs],
                "sum_of_parts_ms": sum(c.latency_s for c in part_costs) * 1e3,
            }
        doc["modes"].setdefault(mode, {})[dtype] = {"original_ms": orig.latency_s * 1e3, "original_p10_ms": orig.breakdown["p10_s"] * 1e3,
                                "original_p90_ms": orig.breakdown["p90_s"] * 1e3, "ranks": rows}
        print(f"{mode} {dtype}: original {orig.latency_s * 1e3:.4f} ms; "
              + ", ".join(f"r={r}: {rows[str(r)]['fused_ms']:.4f}" for r in ranks), flush=True)
    write_json_atomic(args.out, doc)


if __name__ == "__main__":
    main()
