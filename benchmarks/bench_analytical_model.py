"""Throughput of the analytical model's batch path on the golden Eyeriss architecture.

Prints mappings evaluated per second (one core) for batches of random factorisations of
the r18_l3 layer, with (a) every slot of the golden structure and (b) only the slots a
row-stationary mapper varies, and the ratio against the 10,000 mappings/s target and
against one-at-a-time ``evaluate``.

    python benchmarks/bench_analytical_model.py [--batch 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from haloc_hw.cost.analytical.model import AnalyticalModel
from haloc_hw.cost.analytical.nest import mapping_from_structure, structure_from_mapping
from haloc_hw.errors import HalocError
from haloc_hw.spec.constraints import load_mapping
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.loader import load_arch
from haloc_hw.workload import load_problem

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "timeloop-golden" / "r18_l3"
TARGET = 10_000.0


def factorise(n: int, k: int, rng: random.Random) -> list[int]:
    out, p = [1] * k, 2
    while n > 1:
        while n % p == 0:
            out[rng.randrange(k)] *= p
            n //= p
        p += 1
    return out


def random_rows(structure, shape, slots_by_dim, B, rng):
    rows = np.ones((B, len(structure.slots)), dtype=np.int64)
    for b in range(B):
        for d, ks in slots_by_dim.items():
            for k, f in zip(ks, factorise(shape.dims[d], len(ks), rng)):
                rows[b, k] = f
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    arch = load_arch(GOLDEN / "arch.yaml")
    energy = load_energy_table(GOLDEN / "ERT.yaml", arch)
    shape = load_problem(GOLDEN / "problem.yaml")
    mapping = load_mapping(GOLDEN / "map.yaml", arch)
    model = AnalyticalModel(arch, energy)
    full, row = structure_from_mapping(mapping, arch, shape)
    rng = random.Random(0)

    # (b) the slots a row-stationary mapper varies (golden constraints): spads, Dummy S/C, glb X Q/M, glb T C/M/N/P, DRAM
    varied = [k for k, s in enumerate(full.slots)
              if (s.level, s.kind, s.dim) in {
                  ("psum_spad", "temporal", "M"), ("weights_spad", "temporal", "C"), ("weights_spad", "temporal", "R"),
                  ("DummyBuffer", "spatial", "S"), ("DummyBuffer", "spatial", "C"), ("DummyBuffer", "spatial", "M"),
                  ("shared_glb", "spatial", "Q"), ("shared_glb", "spatial", "M"),
                  ("shared_glb", "temporal", "C"), ("shared_glb", "temporal", "M"), ("shared_glb", "temporal", "P"),
                  ("DRAM", "temporal", "C"), ("DRAM", "temporal", "M"), ("DRAM", "temporal", "Q"),
                  ("DRAM", "temporal", "P"), ("DRAM", "temporal", "N"), ("DRAM", "temporal", "S"), ("DRAM", "temporal", "R")}]
    small = full.with_slots(tuple(full.slots[k] for k in varied))
    for label, st in (("all 56 slots", full), ("mapper slots", small)):
        by_dim: dict[str, list[int]] = {}
        for k, s in enumerate(st.slots):
            by_dim.setdefault(s.dim, []).append(k)
        rows = random_rows(st, shape, by_dim, args.batch, rng)
        model.evaluate_batch(shape, st, rows[:64])  # compile / warm up
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = model.evaluate_batch(shape, st, rows)
            best = min(best, time.perf_counter() - t0)
        rate = args.batch / best
        print(f"{label:14s}: {args.batch} mappings in {best*1e3:.1f} ms -> {rate:,.0f} mappings/s "
              f"({rate / TARGET:.1f}x the 10,000/s target; {res.valid.mean():.0%} valid)")
        if label == "mapper slots":
            # the same structure on valid rows only (all fit the buffers and the mesh)
            pool = random_rows(st, shape, by_dim, 40 * args.batch, rng)
            ok = pool[model.evaluate_batch(shape, st, pool).valid]
            vrows = np.resize(ok, (args.batch, ok.shape[1])) if len(ok) else rows
            model.fallback_rows = 0
            t0 = time.perf_counter()
            res = model.evaluate_batch(shape, st, vrows)
            dt = time.perf_counter() - t0
            vrate = args.batch / dt
            print(f"{'valid rows':14s}: {args.batch} mappings ({len(ok)} distinct) in {dt*1e3:.1f} ms -> "
                  f"{vrate:,.0f} mappings/s ({vrate / TARGET:.1f}x target; {model.fallback_rows} rows took the "
                  f"per-row link-transfer path)")
    # one at a time
    n = 200
    mps = [mapping_from_structure(full, rows_row) for rows_row in random_rows(full, shape, {d: [k for k, s in enumerate(full.slots) if s.dim == d] for d in full.dims}, n, rng)]
    t0 = time.perf_counter()
    for mp in mps:
        try:
            model.evaluate(shape, mp)
        except HalocError:  # invalid mappings raise; they are timed too
            pass
    single = n / (time.perf_counter() - t0)
    print(f"single evaluate: {single:,.0f} mappings/s; batch speed-up {rate / single:.0f}x")


if __name__ == "__main__":
    main()
