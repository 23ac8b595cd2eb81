"""``haloc-hw workloads``: write the Timeloop problem of every layer and rank candidate.

For a model and input size it writes, under ``--out``:

* ``problems/<shape key>.yaml``: one Timeloop problem per distinct convolution shape (an
  original layer, or the 1×1 in / K×K core / 1×1 out convolution of a Tucker-2 candidate);
  identical shapes share one file;
* ``index.csv``: one row per (layer, candidate, role) with the shape and its file;
* ``manifest.json``: the settings that produced the folder.

Everything is written into a temporary folder next to ``--out`` and renamed into place at
the end, so an error or an interrupt never leaves a half-written folder. An existing
``--out`` folder is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import tempfile
from pathlib import Path

from haloc_hw.errors import HalocError
from haloc_hw.workload import DIALECTS, ConvShape, parse_input_size

log = logging.getLogger(__name__)

INDEX_COLUMNS: tuple[str, ...] = ("layer", "r1", "r2", "role", "C", "M", "R", "S", "P", "Q", "N", "G", "stride", "macs", "file")
PROBLEM_DIR = "problems"


def _stride_text(shape: ConvShape) -> str:
    return str(shape.Wstride) if shape.Wstride == shape.Hstride else f"{shape.Wstride}x{shape.Hstride}"


def _check_out(out: Path, force: bool) -> None:
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise HalocError("the output path exists and is not a folder", file=out, key="--out", fix="choose a folder path")
    if out.is_dir() and not force:
        raise HalocError("the output folder already exists", file=out, key="--out", fix="pass --force to replace it, or choose another folder")


def write_workloads(
    out: str | Path,
    model_name: str,
    input_size: tuple[int, int, int],
    batch: int = 1,
    num_classes: int = 10,
    dialect: str = "v3",
    step: int | None = None,
    equal: bool = True,
    max_macs_ratio: float | None = None,
    include_full: bool = False,
    force: bool = False,
    progress: bool | None = None,
) -> dict[str, int]:
    """Build the model, enumerate workloads and write the folder atomically; returns counts."""
    from tqdm import tqdm

    from haloc_hw.decompose.ranks import candidate_workloads
    from haloc_hw.models import build_model
    from haloc_hw.workload import extract_shapes, problem_yaml

    out = Path(out)
    if dialect not in DIALECTS:
        raise HalocError(f"unknown Timeloop dialect '{dialect}'", key="--dialect", fix=f"use one of {', '.join(DIALECTS)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise HalocError(f"batch must be a positive integer, got {batch!r}", key="--batch")
    _check_out(out, force)
    model = build_model(model_name, num_classes=num_classes, in_channels=input_size[0])
    layers = extract_shapes(model, input_size, batch=batch)
    rows = candidate_workloads(layers, step=step, equal=equal, max_macs_ratio=max_macs_ratio, include_full=include_full)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        problems = tmp / PROBLEM_DIR
        problems.mkdir()
        written: set[str] = set()
        with (tmp / "index.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(INDEX_COLUMNS)
            for row in tqdm(rows, desc="workloads", unit="conv", disable=None if progress is None else not progress):
                shape = row.shape
                rel = f"{PROBLEM_DIR}/{shape.key}.yaml"
                if shape.key not in written:
                    (tmp / rel).write_text(problem_yaml(shape, dialect))
                    written.add(shape.key)
                writer.writerow(
                    [
                        row.layer,
                        "" if row.r1 is None else row.r1,
                        "" if row.r2 is None else row.r2,
                        row.role,
                        shape.C,
                        shape.M,
                        shape.R,
                        shape.S,
                        shape.P,
                        shape.Q,
                        shape.N,
                        shape.G,
                        _stride_text(shape),
                        shape.macs,
                        rel,
                    ]
                )
        counts = {
            "layers": len(layers),
            "decomposable": sum(layer.decomposable for layer in layers),
            "rows": len(rows),
            "problems": len(written),
        }
        manifest = {
            "model": model_name,
            "input_size": list(input_size),
            "num_classes": num_classes,
            "batch": batch,
            "dialect": dialect,
            "step": step,
            "equal": equal,
            "max_macs_ratio": max_macs_ratio,
            "include_full": include_full,
            **counts,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.chmod(0o755)
        _swap_into_place(tmp, out, force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _swap_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Rename ``tmp`` onto ``out``; an existing ``out`` (only with ``force``) is moved aside first."""
    _check_out(out, force)  # the folder may have appeared while we worked
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        old.rmdir()
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _run(args: argparse.Namespace) -> int:
    from haloc_hw.models import default_dataset, default_input_size, default_num_classes
    from haloc_hw.models.registry import check_model_name

    model = check_model_name(args.model).name
    dataset = args.dataset or default_dataset(model)
    size = parse_input_size(args.input_size) if args.input_size is not None else default_input_size(model, dataset)
    if args.step is not None and args.step < 1:
        raise HalocError(f"rank step must be a positive integer, got {args.step}", key="--step", fix="use e.g. 8, 16 or 32")
    counts = write_workloads(
        args.out,
        model,
        size,
        batch=args.batch,
        num_classes=args.num_classes or default_num_classes(dataset),
        dialect=args.dialect,
        step=args.step,
        equal=args.equal,
        max_macs_ratio=args.max_macs_ratio,
        include_full=args.include_full,
        force=args.force,
    )
    print(
        f"wrote {counts['problems']} problem files for {counts['rows']} workloads "
        f"({counts['layers']} layers, {counts['decomposable']} decomposable) to {args.out}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "workloads",
        help="write Timeloop problems for every layer and Tucker-2 rank candidate",
        description=__doc__.splitlines()[0].strip("`"),
    )
    parser.add_argument("--model", required=True, help="resnet20 | vgg16 | resnet18 | mobilenet_v2")
    parser.add_argument("--input-size", default=None, help="C,H,W (default: from --dataset)")
    parser.add_argument("--num-classes", type=int, default=None, help="width of the final layer (default: from the dataset: 1000 for imagenet, else 10)")
    parser.add_argument("--dataset", default=None, help="pick the input size: cifar10 (default for resnet20/vgg16), fashion-mnist, imagenet (default for resnet18/mobilenet_v2)")
    parser.add_argument("--batch", type=int, default=1, help="batch size N (default 1)")
    parser.add_argument("--dialect", default="v3", help="v3 (Timeloop 3.0.x, hyphenated keys; default) or v4 (timeloopfe)")
    parser.add_argument("--step", type=int, default=None, help="rank step (default: 8/16/32 by layer width)")
    parser.add_argument("--equal", action=argparse.BooleanOptionalAction, default=True, help="r1 == r2 only (default) or all pairs")
    parser.add_argument("--max-macs-ratio", type=float, default=None, help="drop candidates with more MACs than this × the original")
    parser.add_argument("--include-full", action="store_true", help="also the full-rank candidate")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created atomically)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.set_defaults(func=_run)

