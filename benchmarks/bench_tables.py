"""Cost-table build speed: a whole ResNet-18 table on the analytical backend.

Targets (ratios below 1.0 meet them):

* all layers × multiples-of-32 candidates × 3 sub-convs, ``--jobs 2``: <= 60 s;
* the same build again (every entry a cache hit): <= 2 s.

Run: ``python benchmarks/bench_tables.py [--jobs 2] [--step 32] [--arch arch/eyeriss.yaml]``.
It also checks that the cached rebuild exports a byte-identical CSV.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

TARGET_BUILD_S = 60.0
TARGET_CACHED_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--step", type=int, default=32)
    parser.add_argument("--arch", default="arch/eyeriss.yaml")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--keep", type=Path, default=None, help="keep the table in this folder")
    args = parser.parse_args()

    from haloc_hw.cost.analytical.backend import AnalyticalCostModel
    from haloc_hw.cost.executors import make_executor
    from haloc_hw.cost.table import build_table
    from haloc_hw.decompose import rank_candidates
    from haloc_hw.models import default_num_classes
    from haloc_hw.models import build_model, default_dataset, default_input_size
    from haloc_hw.spec.shipped import resolve_spec_path
    from haloc_hw.workload import extract_shapes

    dataset = default_dataset(args.model)
    size = default_input_size(args.model, dataset)
    layers = extract_shapes(build_model(args.model, num_classes=default_num_classes(dataset)), size, 1)
    backend = AnalyticalCostModel.from_files(resolve_spec_path(args.arch))

    def candidates(info):
        return rank_candidates(info.shape, step=args.step)

    n_cands = sum(len(candidates(i)) for i in layers if i.decomposable)
    print(f"{args.model}: {len(layers)} layers, {sum(i.decomposable for i in layers)} decomposable, {n_cands} candidates")

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_tables_"))
    path = folder / "bench.sqlite"
    path.unlink(missing_ok=True)
    executor = make_executor(args.jobs)
    try:
        start = time.perf_counter()
        table = build_table(layers, backend, path, candidates_fn=candidates, executor=executor, progress=False,
                            strict="originals")  # fmt: skip
        build_s = time.perf_counter() - start
        table.to_csv(folder / "first.csv")
        start = time.perf_counter()
        again = build_table(layers, backend, path, candidates_fn=candidates, executor=executor, progress=False,
                            strict="originals")  # fmt: skip
        cached_s = time.perf_counter() - start
        again.to_csv(folder / "second.csv")
    finally:
        executor.close()

    rep = table.build_report
    same = (folder / "first.csv").read_bytes() == (folder / "second.csv").read_bytes()
    print(f"build ({executor.name}, {executor.workers} workers): {rep.entries} unique entries in {build_s:.1f} s"
          f" = {rep.entries / build_s:.1f} entries/s; ratio to the {TARGET_BUILD_S:.0f} s target: {build_s / TARGET_BUILD_S:.2f}")
    print(f"cached rebuild: {again.build_report.cache_hits}/{again.build_report.entries} hits in {cached_s:.2f} s;"
          f" ratio to the {TARGET_CACHED_S:.0f} s target: {cached_s / TARGET_CACHED_S:.2f}")
    if rep.failed:
        print(f"note: {rep.failed} evaluations failed (never cached, so the 'cached' rebuild retried them); first: {rep.errors[0]}")
    print(f"CSV identical after the cached rebuild: {same}")
    print(f"table: {path}")


if __name__ == "__main__":
    main()
