"""Start-up and end-to-end CLI times against the recorded timeloop-mapper wall times.

Prints, per golden case, ``haloc-hw cost map`` end to end (a fresh process, as a user runs
it) and its ratio to ``timeloop-mapper``'s wall time from ``summary.json``; and the median
time of ``haloc-hw --help``, and of a fully cached ``haloc-hw tables`` rerun of ResNet-18 on
Eyeriss (the table is built once into ``--tables`` first). Targets (issue 14): --help <= 0.3 s,
cost map median <= 0.3 s, cached ResNet-18 tables rerun <= 1 s; each is printed as its ratio
to the target (below 1: met).

Times are of an installed package as a user has it: bytecode cached. The benchmark compiles
``haloc_hw`` once (``compileall``) and runs the commands with ``PYTHONDONTWRITEBYTECODE``
removed from the environment; where that variable is set (some sandboxes set it) every start
would otherwise recompile the analytical model's modules from source, about 50 ms more.

    python benchmarks/bench_startup.py [--golden /work/shared/timeloop-golden] [--repeats 3] [--tables DIR]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "haloc_hw.cli", *argv], cwd=ROOT, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    compileall.compile_dir(str(ROOT / "haloc_hw"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", type=Path, default=Path("/work/shared/timeloop-golden"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tables", type=Path, default=None, help="folder for the ResNet-18 table (default: a temporary one)")
    a = ap.parse_args()
    help_s = statistics.median(_time(["--help"]) for _ in range(a.repeats))
    print(f"haloc-hw --help: median {help_s:.3f} s (target 0.3 s, ratio {help_s / 0.3:.2f})")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        out = (a.tables or Path(tmp)) / "r18"
        argv = ["tables", "--model", "resnet18", "--arch", "arch/eyeriss.yaml", "--no-progress", "--out", str(out)]
        _time(argv)  # build (or complete) the table once
        rerun = statistics.median(_time(argv) for _ in range(a.repeats))
        print(f"cached resnet18 tables rerun: median {rerun:.3f} s (target 1 s, ratio {rerun / 1.0:.2f})")
    ratios, times = [], []
    cases = sorted(p for p in a.golden.iterdir() if (p / "summary.json").is_file()) if a.golden.is_dir() else []
    for case in cases:
        files = [str(case / f) for f in ("arch.yaml", "problem.yaml", "constraints.yaml", "mapper.yaml", "ERT.yaml")]
        t = statistics.median(_time(["cost", "map", *files, "--json"]) for _ in range(a.repeats))
        mapper_s = json.loads((case / "summary.json").read_text())["mapper_seconds"]
        times.append(t)
        ratios.append(mapper_s / t)
        print(f"{case.name:20s} cost map {t:.3f} s   timeloop-mapper {mapper_s:.2f} s   {mapper_s / t:.1f}x faster")
    if times:
        print(f"cost map end to end: median {statistics.median(times):.3f} s (target 0.3 s), "
              f"median speed-up over timeloop-mapper {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
