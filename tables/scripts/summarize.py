"""Markdown summary of a device run (tables, repeatability, layer3 probe, bench) for docs/GPU-TABLES.md.

    PYTHONPATH=. python3 tables/scripts/summarize.py RUN_DIR
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from haloc_hw.cost.table import CostTable


def per_layer(path: Path) -> str:
    table = CostTable.open(path)
    lines = ["| layer | original ms | best (r1, r2) | best ms | best / original | cheaper candidates |", "|---|---:|---:|---:|---:|---:|"]
    seen: set[tuple] = set()
    for name in table.decomposable_layers():
        shape = table.layer(name).shape
        key = (shape, tuple(table.candidates(name)))
        if key in seen:  # identical layers have identical rows
            continue
        seen.add(key)
        original = table.original_cost(name, "latency_s")
        costs = [(table.cost(name, r1, r2, "latency_s"), (r1, r2)) for r1, r2 in table.candidates(name)]
        best = min(costs)
        cheaper = sum(c < original for c, _ in costs)
        lines.append(f"| {name} ({shape.C}->{shape.M}, {shape.in_h}x{shape.in_w}, stride {shape.Wstride}) | {original * 1e3:.4f} | "
                     f"{best[1]} | {best[0] * 1e3:.4f} | {best[0] / original:.2f} | {cheaper}/{len(costs)} |")
    return "\n".join(lines)


def repeatability(a: Path, b: Path) -> str:
    ta, tb = CostTable.open(a), CostTable.open(b)
    ra = {(r["layer"], r["role"], r["r1"], r["r2"]): r["latency_s"] for r in ta.rows()}
    rb = {(r["layer"], r["role"], r["r1"], r["r2"]): r["latency_s"] for r in tb.rows()}
    diffs = sorted(abs(rb[k] - ra[k]) / ra[k] for k in ra if k in rb)
    cand = sorted(
        abs(tb.cost(n, *p, "latency_s") - ta.cost(n, *p, "latency_s")) / ta.cost(n, *p, "latency_s")
        for n in ta.decomposable_layers() for p in ta.candidates(n)
    )
    best_same = sum(
        min(ta.candidates(n), key=lambda p: ta.cost(n, *p, "latency_s")) == min(tb.candidates(n), key=lambda p: tb.cost(n, *p, "latency_s"))
        for n in ta.decomposable_layers()
    )
    q = lambda xs, f: xs[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
    return (f"all {len(diffs)} slots: median relative difference {statistics.median(diffs):.2%}, p90 {q(diffs, 0.9):.2%}, max {diffs[-1]:.2%}; "
            f"candidate costs ({len(cand)}): median {statistics.median(cand):.2%}, p90 {q(cand, 0.9):.2%}; "
            f"same fastest candidate in {best_same}/{len(ta.decomposable_layers())} layers")


def main() -> None:
    run = Path(sys.argv[1])
    for name in ("resnet18_bf16", "resnet18_fp32", "resnet20_bf16"):
        path = run / name / f"{name}.sqlite"
        if path.exists():
            build = CostTable.open(path).metadata.get("last_build", {})
            print(f"\n### {name} (build {build.get('seconds')} s, {build.get('entries')} entries)\n")
            print(per_layer(path))
    rep = run / "repeat" / "resnet18_bf16" / "resnet18_bf16.sqlite"
    if rep.exists():
        print("\nrepeatability resnet18_bf16:", repeatability(run / "resnet18_bf16" / "resnet18_bf16.sqlite", rep))
    probe = run / "layer3.json"
    if probe.exists():
        doc = json.loads(probe.read_text())
        for mode, dtypes in doc["modes"].items():
            ranks = list(next(iter(dtypes.values()))["ranks"])
            print(f"\n#### layer3 probe, {mode}\n")
            print("| dtype | original | " + " | ".join(f"r={r} fused (parts)" for r in ranks) + " |")
            print("|---|---:|" + "---:|" * len(ranks))
            for dtype, d in dtypes.items():
                cells = [f"{d['ranks'][r]['fused_ms']:.4f} ({d['ranks'][r]['sum_of_parts_ms']:.4f})" for r in ranks]
                print(f"| {dtype} | {d['original_ms']:.4f} | " + " | ".join(cells) + " |")
    for bench in sorted(run.glob("bench_*.json")):
        doc = json.loads(bench.read_text())
        print(f"\n{bench.stem}: " + json.dumps({k: doc.get(k) for k in ("original", "original_eager", "compressed", "compressed_eager",
                                                                       "predicted_original_s", "predicted_compressed_s",
                                                                       "gap_original_pct", "gap_compressed_pct", "speedup")}))
        print("ranks:", doc.get("ranks"))


if __name__ == "__main__":
    main()
