"""Co-design speed and stability: 64 Eyeriss design points x ResNet-20 candidates, priced and allocated.

Target (the ratio below 1.0 meets it): all 64 points of ``spaces/eyeriss.yaml`` rendered,
priced, given a cost table each and allocated (uniform + greedy) in <= 5 min on 2 cores.

It prints points per second, the table cache hit rate (slots served by an entry shared
inside a table or already cached, over all slots), then runs the same space again into a
fresh folder with the same seed and checks that the Pareto set is identical (every point
recomputed, tables rebuilt), then once more into the first folder (every point reused),
and says whether the shipped Eyeriss point (the space's reference) is on the front or
dominated, and by how much.

Run: ``python benchmarks/bench_codesign.py [--jobs 2] [--space spaces/eyeriss.yaml] [--base RUN]``.
Without ``--base`` the base model is an untrained ResNet-20 (seeded): the accuracy proxy then
only ranks allocations by how much of random weights they keep, which is enough for timing.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

TARGET_S = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--space", type=Path, default=Path("spaces/eyeriss.yaml"))
    parser.add_argument("--base", type=Path, default=None)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from haloc_hw.codesign import CodesignConfig, load_space, run

    space = load_space(args.space)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_codesign_"))

    def once(folder: str):
        cfg = CodesignConfig(out=root / folder, model="resnet20", data=args.data, subset=256, base=args.base,
                             epochs_base=0, jobs=args.jobs, haloc_candidates=0, html=False)
        t0 = time.perf_counter()
        result = run(space, cfg)
        return result, time.perf_counter() - t0

    first, t_first = once("a")
    s = first.stats
    print(f"space {space.name}: {s['points']} points, {len(first.rows)} point x allocator rows, "
          f"{len(first.pareto)} on the front; energy from {first.rows[0]['energy_source']}, "
          f"area from {first.rows[0]['area_source']}")
    print(f"evaluation: {s['eval_seconds']:.1f} s for {s['evaluated_now']} points on {args.jobs} worker(s) = "
          f"{s['points_per_second']:.3f} points/s; whole run {t_first:.1f} s")
    print(f"tables: {s['table_slots']} slots, {s['table_entries']} entries, {s['evaluated_entries']} evaluated; "
          f"cache hit rate {s['cache_hit_rate']:.1%}")
    print(f"ratio to target ({TARGET_S:.0f} s): {t_first / TARGET_S:.2f}")

    second, t_second = once("b")

    def front(res):
        return sorted((r["id"], r["method"]) for r in res.pareto)

    same = front(first) == front(second)
    print(f"fresh rerun, same seed: {t_second:.1f} s, Pareto set {'identical' if same else 'DIFFERENT'} "
          f"({len(second.pareto)} rows)")
    third, t_third = once("a")
    print(f"rerun in the same folder: {t_third:.1f} s, {third.stats['evaluated_now']} points evaluated, "
          f"front {'identical' if front(third) == front(first) else 'DIFFERENT'}")

    ref = first.reference
    if ref is None:
        print("no reference point in the space")
        return
    print(f"reference point {ref.get('values')}: {ref.get('status')}")
    for entry in ref.get("rows", []):
        if entry.get("best"):
            b = entry["best"]
            ratios = ", ".join(f"{k[:-6]} x{v:.3f}" for k, v in b.items() if k.endswith("_ratio") and v is not None)
            print(f"  {entry['method']}: dominated by {entry['dominated_by']} row(s); strongest: {b['id']} "
                  f"{b['method']} {b['values']}: {ratios}")
        else:
            print(f"  {entry['method']}: on the front")


if __name__ == "__main__":
    main()
