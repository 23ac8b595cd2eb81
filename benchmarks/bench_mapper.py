"""Speed and quality of the embedded mapper against timeloop-mapper on the golden cases.

For every case in ../shared/timeloop-golden the mapper searches the case's constraints
(``repeat`` runs, the median time counts; the architecture, constraints and ERT are read
once per case, as a cost-table build reads them once) and the script prints per case the
time, cycles and energy relative to timeloop-mapper's best mapping (summary.json), then
the median time per layer, timeloop-mapper's median ``mapper_seconds`` and their ratio.

Goal: median <= 0.35 s per layer on a 2-core machine, cycles and energy within 5 % of
timeloop-mapper on every case and no worse on the median case.

    .venv/bin/python benchmarks/bench_mapper.py [--repeat 3] [--metric delay,energy]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from haloc_hw.cost.analytical.mapper import Mapper
from haloc_hw.spec.constraints import load_constraints
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.loader import load_arch
from haloc_hw.workload import load_problem

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "timeloop-golden"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", type=Path, default=GOLDEN)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--metric", default="delay,energy")
    args = ap.parse_args(argv)
    if not args.golden.is_dir():
        print(f"golden cases not found at {args.golden}", file=sys.stderr)
        return 2
    cases = sorted(p for p in args.golden.iterdir() if p.is_dir())
    times, tl_times, rc, re_ = [], [], [], []
    print(f"{'case':22s} {'seconds':>8s} {'evaluated':>9s} {'cycles/TL':>10s} {'energy/TL':>10s} {'TL s':>6s}")
    for d in cases:
        arch = load_arch(d / "arch.yaml")
        cons = load_constraints(d / "constraints.yaml", arch)
        energy = load_energy_table(d / "ERT.yaml", arch)
        shape = load_problem(d / "problem.yaml")
        summary = json.loads((d / "summary.json").read_text())
        ref = summary["mapper"]
        runs = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            res = Mapper(arch, cons, energy).search(shape, args.metric)
            runs.append(time.perf_counter() - t0)
        t = statistics.median(runs)
        c = res.evaluation.cycles / ref["cycles"]
        e = res.evaluation.energy_pJ / ref["energy_pJ"]
        times.append(t)
        tl_times.append(float(summary["mapper_seconds"]))
        rc.append(c)
        re_.append(e)
        print(f"{d.name:22s} {t:8.3f} {res.evaluated:9d} {c:10.4f} {e:10.4f} {summary['mapper_seconds']:6.2f}")
    med, tl_med = statistics.median(times), statistics.median(tl_times)
    print()
    print(f"median seconds per layer: ours {med:.3f} s, timeloop-mapper {tl_med:.2f} s -> {tl_med / med:.1f}x faster "
          f"(ratio ours/timeloop = {med / tl_med:.4f}); goal <= 0.35 s: {'met' if med <= 0.35 else 'NOT met'}")
    print(f"cycles vs timeloop-mapper: median {statistics.median(rc):.4f}, max {max(rc):.4f}")
    print(f"energy vs timeloop-mapper: median {statistics.median(re_):.4f}, max {max(re_):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
