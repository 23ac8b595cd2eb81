"""Mapper speed on general (non-CNN) problems: the problems of tests/data on its two-level design.

Prints, per problem, the median in-process mapper time over ``repeat`` runs and its ratio
to the 0.1 s per-layer goal of the golden CNN layers (benchmarks/bench_mapper.py).

    .venv/bin/python benchmarks/bench_problems.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from haloc_hw.cost.analytical.mapper import Mapper
from haloc_hw.problem import read_problem
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.loader import load_arch
from haloc_hw.spec.mapping import Constraints

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
GOAL_S = 0.1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    arch = load_arch(DATA / "two_level.arch.yaml")
    ert = load_energy_table(DATA / "two_level.ert.yaml", arch)
    mapper = Mapper(arch, Constraints(()), ert)
    times = []
    for path in sorted((DATA / "problems").glob("*.yaml")):
        prob = read_problem(path)
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = mapper.search(prob)
            runs.append(time.perf_counter() - t0)
        med = statistics.median(runs)
        times.append(med)
        print(f"{path.stem:<20} {med:8.4f} s  ({med / GOAL_S:.2f}x the goal)  cycles {res.evaluation.cycles}  "
              f"energy {res.evaluation.energy_pJ:.1f} pJ  evaluated {res.evaluated}")
    med = statistics.median(times)
    print(f"median {med:.4f} s per problem -> {med / GOAL_S:.2f}x the {GOAL_S} s goal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
