"""Write ranks.json choosing, per decomposable layer, the table's fastest candidate if it beats the original.

This is not a HALOC search (no accuracy term): it gives the best speed-up a table says is
possible, which ``haloc-hw bench`` then measures on the whole network.

    PYTHONPATH=. python3 tables/scripts/fastest_ranks.py TABLE.sqlite ranks.json [--metric latency_s]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from haloc_hw.cost.table import CostTable
from haloc_hw.fileio import write_json_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--metric", default="latency_s")
    args = parser.parse_args()
    table = CostTable.open(args.table)
    layers = {}
    for name in table.decomposable_layers():
        original = table.original_cost(name, args.metric)
        best = min(((table.cost(name, r1, r2, args.metric), (r1, r2)) for r1, r2 in table.candidates(name)), default=None)
        if best is not None and best[0] < original:
            layers[name] = {"r1": best[1][0], "r2": best[1][1], "cost": best[0], "original_cost": original}
    write_json_atomic(args.out, {"metric": args.metric, "layers": layers})
    print(f"{args.out}: {len(layers)} of {len(table.decomposable_layers())} layers decomposed")


if __name__ == "__main__":
    main()
