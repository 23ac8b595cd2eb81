"""``haloc-hw tables``: build cost tables for a model, or compare two tables.

Build::

    haloc-hw tables --model resnet18 --arch arch/eyeriss.yaml --backend analytical --jobs 2 --out tables/r18

writes ``tables/r18/r18.sqlite`` (one file per arch, ``r18-ARCH.sqlite``, when ``--arch``
repeats), the CSV beside it, and prints per layer the original cost and the best and worst
candidate. Rerunning the same command only evaluates what is missing.

Compare::

    haloc-hw tables --compare tables/a/a.sqlite tables/b/b.sqlite

matches entries by (layer, role, r1, r2) and prints their differences with the median and
maximum relative error of cycles and energy.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError

def register(subparsers: Any) -> None:
    from haloc_hw.cli.options import HelpFormatter, add_backend_options
    from haloc_hw.cost.backends import available_backends
    from haloc_hw.cost.metric import METRICS

    p = subparsers.add_parser(
        "tables",
        help="build per-candidate cost tables (or --compare two)",
        description=__doc__.splitlines()[0],
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", help="model name (resnet20, vgg16, resnet18, mobilenet_v2)")
    p.add_argument("--dataset", default=None, help="dataset deciding input size and classes, e.g. fashion-mnist for a "
                   "table a Fashion-MNIST search reads (default: imagenet for resnet18/mobilenet_v2, else cifar10)")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the final layer (default: from the dataset)")
    p.add_argument("--input-size", default=None, metavar="C,H,W", help="input size per sample, e.g. 3,224,224 (default: from the dataset)")
    p.add_argument("--batch", type=int, default=1, help="batch size N of every workload (and of gpu timing)")
    p.add_argument("--arch", action="append", default=[], metavar="FILE", help="architecture YAML; repeat for one table per arch")
    p.add_argument("--backend", default="analytical", choices=sorted(available_backends()), help="cost backend")
    p.add_argument("--step", type=int, default=None, help="rank step of the candidates (default: 8/16/32 by layer width)")
    p.add_argument("--unequal", action="store_true", help="all (r1, r2) pairs, not only r1 == r2")
    p.add_argument("--max-macs-ratio", type=float, default=None, help="drop candidates with more MACs than RATIO x the layer")
    p.add_argument("--jobs", type=int, default=None, help="parallel local jobs (default: one per CPU core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run the jobs on a Dask scheduler (tcp://host:8786)")
    p.add_argument("--scheduler-timeout", type=float, default=10.0, metavar="S", help="seconds to wait for the Dask scheduler")
    p.add_argument("--metric", default=None, choices=METRICS,
                   help="metric of the printed best/worst summary (default: cycles, or latency_s)")  # fmt: skip
    p.add_argument("--strict", action="store_true",
                   help="fail if any candidate cannot be evaluated (default: drop such candidates with a warning;"
                        " a failed original layer is always an error)")  # fmt: skip
    p.add_argument("--rebuild", action="store_true", help="delete an existing table first instead of reusing its entries")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, metavar="DIR", help="table folder: DIR/NAME.sqlite and DIR/NAME.csv, NAME = folder name")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two table files instead of building")
    add_backend_options(p, taken={"--batch"})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(*args.compare)
    return _build(args)


# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------


def _target(args: argparse.Namespace) -> Any:
    """What the tables price; the dataset defaults need no torch."""
    from haloc_hw.cost.build import TableTarget
    from haloc_hw.models import default_dataset, default_input_size, default_num_classes
    from haloc_hw.workload import parse_input_size

    dataset = args.dataset or default_dataset(args.model)
    input_size = parse_input_size(args.input_size) if args.input_size else default_input_size(args.model, dataset)
    return TableTarget(model=args.model, dataset=dataset, num_classes=args.num_classes or default_num_classes(dataset),
                       input_size=tuple(input_size), batch=args.batch)


def _build(args: argparse.Namespace) -> int:
    from haloc_hw.cli.options import table_settings
    from haloc_hw.cost.build import build_cost_table, cached_layers, model_layers, resolve_arch
    from haloc_hw.runfolder import RunFolder

    if not args.model:
        raise HalocError("no model given", key="--model", fix="pass --model resnet18 (or --compare A B)")
    if args.out is None:
        raise HalocError("no output folder given", key="--out", fix="pass --out tables/NAME")
    if args.batch < 1:
        raise HalocError(f"--batch must be at least 1, got {args.batch}", key="--batch", fix="pass --batch 1 or more")
    RunFolder(args.out).check_writable()
    settings = replace(table_settings(args, args.arch), equal=not args.unequal, max_macs_ratio=args.max_macs_ratio)
    archs = [resolve_arch(settings, a) for a in args.arch] or [resolve_arch(settings, None)]
    stems = [a.name.removesuffix(".yaml") if a else "" for a in archs]
    if len(set(stems)) != len(stems):
        raise HalocError("two --arch files have the same name", key="--arch", fix="rename one: table files are named after the arch")
    target = _target(args)
    out_dir: Path = args.out
    name = out_dir.name or "table"
    layers = None
    for arch, stem in zip(archs, stems):
        path = out_dir / f"{name if len(archs) == 1 else f'{name}-{stem}'}.sqlite"
        known = None if args.rebuild else cached_layers(path, target)
        if known is None and layers is None:
            layers = model_layers(target)
        table = build_cost_table(target, settings, arch, path, layers=known or layers,
                                 strict=True if args.strict else "originals", rebuild=args.rebuild,
                                 progress=not args.no_progress, scheduler=args.scheduler,
                                 scheduler_timeout_s=args.scheduler_timeout)
        csv_path = table.to_csv(path.with_suffix(".csv"))
        report = table.build_report
        print(f"{table.path}: {report.entries} entries ({report.cache_hits} cached, {report.evaluated} evaluated)"
              f" in {report.seconds:.1f} s; CSV {csv_path}")  # fmt: skip
        dropped = {layer: table.dropped_candidates(layer) for layer in table.layers()}
        dropped = {k: v for k, v in dropped.items() if v}
        if dropped:
            listing = "; ".join(f"{k} {', '.join(f'({a},{b})' for a, b in v)}" for k, v in dropped.items())
            print(f"warning: {sum(map(len, dropped.values()))} candidate(s) dropped, their evaluation failed"
                  f" (rerun to retry; -v shows why): {listing}")  # fmt: skip
        _print_summary(table, args.metric)
    return 0


def _default_metric(table: Any) -> str:
    for layer in table.layers():
        cost = table.entry(layer, "original")
        return "cycles" if cost.cycles is not None else "latency_s"
    return "cycles"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _print_summary(table: Any, metric: str | None) -> None:
    metric = metric or _default_metric(table)
    rows = [("layer", "original", "candidates", "best (r1,r2)", "best", "worst (r1,r2)", "worst")]
    for layer in table.layers():
        original = table.original_cost(layer, metric)
        cands = table.candidates(layer)
        if not cands:
            rows.append((layer, _fmt(original), "0", "-", "-", "-", "-"))
            continue
        costs = [(table.cost(layer, r1, r2, metric), (r1, r2)) for r1, r2 in cands]
        best, worst = min(costs), max(costs)
        rows.append((layer, _fmt(original), str(len(cands)), f"({best[1][0]},{best[1][1]})", _fmt(best[0]),
                     f"({worst[1][0]},{worst[1][1]})", _fmt(worst[0])))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"per-layer {metric}:")
    for r in rows:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


# ---------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if a == b:
        return 0.0
    return abs(b - a) / abs(a) if a else float("inf")


def _check_same_layers(a: Any, b: Any, path_a: Path, path_b: Path) -> None:
    """Entries of two tables compare only when both price the same layers at the same shapes."""
    from haloc_hw.cost.build import same_shape

    if a.layers() != b.layers():
        raise HalocError(f"the tables have other layers ({len(a.layers())} in A, {len(b.layers())} in B)", file=path_b,
                         key="layers", fix="compare tables built for the same model (same --model and --dataset)")
    for name in a.layers():
        sa, sb = a.layer(name).shape, b.layer(name).shape
        if not same_shape(sa, sb):
            raise HalocError(f"layer {name} has another shape in B (C={sb.C}, M={sb.M}, P={sb.P}, Q={sb.Q}) than in A "
                             f"(C={sa.C}, M={sa.M}, P={sa.P}, Q={sa.Q})", file=path_b, key=name,
                             fix="compare tables built for the same model and input size (--dataset / --input-size)")


def _compare(path_a: Path, path_b: Path) -> int:
    from haloc_hw.cost.table import CostTable

    a, b = CostTable.open(path_a), CostTable.open(path_b)
    _check_same_layers(a, b, path_a, path_b)
    rows_a = {(r["layer"], r["role"], r["r1"], r["r2"]): r for r in a.rows()}
    rows_b = {(r["layer"], r["role"], r["r1"], r["r2"]): r for r in b.rows()}
    common = [k for k in rows_a if k in rows_b]
    if not common:
        raise HalocError("the two tables share no (layer, role, r1, r2) entry", file=path_b,
                         fix="compare tables built for the same model and candidates")  # fmt: skip
    print(f"A = {path_a} ({a.metadata.get('backend')})\nB = {path_b} ({b.metadata.get('backend')})")
    header = ("layer", "role", "r1", "r2", "cycles A", "cycles B", "rel", "energy A", "energy B", "rel")
    lines = [header]
    errors: dict[str, list[float]] = {"cycles": [], "energy_pJ": []}
    for key in common:
        ra, rb = rows_a[key], rows_b[key]
        cells = [key[0], key[1], "" if key[2] is None else str(key[2]), "" if key[3] is None else str(key[3])]
        for field in ("cycles", "energy_pJ"):
            err = _rel(ra[field], rb[field])
            if err is not None:
                errors[field].append(err)
            cells += ["-" if ra[field] is None else _fmt(ra[field]), "-" if rb[field] is None else _fmt(rb[field]),
                      "-" if err is None else f"{err:.2%}"]  # fmt: skip
        lines.append(tuple(cells))
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    for r in lines:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    only_a, only_b = len(rows_a) - len(common), len(rows_b) - len(common)
    print(f"{len(common)} matching entries ({only_a} only in A, {only_b} only in B)")
    for field, label in (("cycles", "cycles"), ("energy_pJ", "energy")):
        errs = errors[field]
        if errs:
            print(f"{label}: median relative error {statistics.median(errs):.3%}, max {max(errs):.3%} over {len(errs)} entries")
        else:
            print(f"{label}: not given by both tables")
    return 0
