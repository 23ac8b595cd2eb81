"""``haloc-hw bench``: measured throughput of a model before and after Tucker-2 compression.

A cost table predicts a model's latency as the sum of its layers' entries; this command
measures the whole network (convolutions *and* everything between them: batch norm, ReLU,
residual adds, pooling) with the same timer the ``gpu`` backend uses, and prints the gap.
The gap tells how far the search's objective is from what a user sees: a table of
convolutions alone cannot see the elementwise layers, and cuDNN chooses algorithms per
call, so the sum of parts is not the whole.

Ranks come from ``ranks.json`` as written by ``haloc-hw search``
(``{"layers": {name: {"r1": .., "r2": .., ...}}}``); a bare ``{name: [r1, r2]}`` or
``{name: {"r1": .., "r2": ..}}`` mapping is accepted too.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from haloc_hw.errors import HalocError
from haloc_hw.workload import parse_input_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measured:
    """One whole-model timing: per-batch latency and the throughput it gives."""

    latency_s: float
    p10_s: float
    p90_s: float
    throughput: float  # images per second


@dataclass
class BenchResult:
    model: str
    batch: int
    input_size: tuple[int, int, int]
    backend: dict[str, Any]
    original: Measured
    compressed: Measured | None = None
    ranks: dict[str, tuple[int, int]] = field(default_factory=dict)
    original_eager: Measured | None = None
    compressed_eager: Measured | None = None
    predicted_original_s: float | None = None
    predicted_compressed_s: float | None = None
    table: str | None = None

    @staticmethod
    def gap_pct(predicted: float | None, measured: Measured | None) -> float | None:
        """``(predicted - measured) / measured`` in percent (negative: the table under-predicts)."""
        if predicted is None or measured is None:
            return None
        return 100.0 * (predicted - measured.latency_s) / measured.latency_s

    @property
    def speedup(self) -> float | None:
        return None if self.compressed is None else self.original.latency_s / self.compressed.latency_s

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ranks"] = {k: list(v) for k, v in self.ranks.items()}
        doc["speedup"] = self.speedup
        doc["gap_original_pct"] = self.gap_pct(self.predicted_original_s, self.original)
        doc["gap_compressed_pct"] = self.gap_pct(self.predicted_compressed_s, self.compressed)
        return doc


def load_ranks(path: str | Path) -> dict[str, tuple[int, int]]:
    """Read ``ranks.json`` (see the module docstring for the accepted forms)."""
    path = Path(path)
    if not path.is_file():
        raise HalocError("ranks file not found", file=path, key="--ranks", fix="give the ranks.json written by 'haloc-hw search'")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HalocError(f"malformed JSON at line {err.lineno}: {err.msg}", file=path, fix="correct the JSON") from None
    except UnicodeDecodeError:
        raise HalocError("not a text file", file=path, key="--ranks", fix="give the ranks.json written by 'haloc-hw search'") from None
    layers = doc.get("layers", doc) if isinstance(doc, dict) else None
    if not isinstance(layers, dict):
        raise HalocError("expected an object mapping layer names to ranks", file=path, key="layers",
                         fix='write {"layers": {"layer1.0.conv1": {"r1": 32, "r2": 32}}}')  # fmt: skip
    ranks: dict[str, tuple[int, int]] = {}
    for name, value in layers.items():
        if isinstance(value, dict) and "r1" in value and "r2" in value:
            pair = (value["r1"], value["r2"])
        elif isinstance(value, (list, tuple)) and len(value) == 2:
            pair = (value[0], value[1])
        elif value is None:
            continue  # layer kept original
        else:
            raise HalocError(f"ranks for '{name}' are {value!r}", file=path, key=f"layers.{name}",
                             fix='give {"r1": R1, "r2": R2} or [R1, R2]')  # fmt: skip
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
            raise HalocError(f"ranks for '{name}' must be positive integers, got {pair!r}", file=path, key=f"layers.{name}",
                             fix="use whole numbers >= 1")  # fmt: skip
        ranks[str(name)] = (int(pair[0]), int(pair[1]))
    return ranks


def _measure(backend: Any, model: Any, batch: int, input_size: tuple[int, int, int]) -> Measured:
    module, x = backend.prepare(model, (batch, *input_size))
    try:
        stats = backend.time_module(module, x)
    except RuntimeError as err:
        from haloc_hw.cost.gpu import is_oom

        if is_oom(err):
            raise HalocError(f"out of memory at batch {batch}", key="--batch", fix="use a smaller --batch") from None
        raise
    return Measured(stats.median_s, stats.p10_s, stats.p90_s, batch / stats.median_s)


def run_bench(
    model_name: str,
    backend: Any,
    *,
    ranks: Mapping[str, tuple[int, int]] | None = None,
    input_size: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    table_path: str | Path | None = None,
    n_iter: int = 0,
) -> BenchResult:
    """Time ``model_name`` (and its compressed form when ``ranks``) on ``backend``.

    ``backend`` is a :class:`~haloc_hw.cost.gpu.GpuCostModel` (its device, dtype, memory
    format and batch apply). Weights are random: latency does not depend on them, so the
    Tucker-2 factors are computed with ``n_iter`` HOOI rounds (0: plain HOSVD, fast).
    """
    from haloc_hw.models import default_num_classes
    from haloc_hw.models import build_model, default_dataset, default_input_size

    table = None
    if table_path is not None:
        from haloc_hw.cost.table import CostTable

        table = CostTable.open(table_path)
    meta = table.metadata if table is not None else {}
    dataset = default_dataset(model_name.lower())
    if input_size is None:
        meta_size = meta.get("input_size")
        if isinstance(meta_size, (list, tuple)) and len(meta_size) == 3:
            input_size = tuple(int(v) for v in meta_size)  # type: ignore[assignment]
        else:
            input_size = default_input_size(model_name, dataset)
    if num_classes is None:
        meta_classes = meta.get("num_classes")
        num_classes = meta_classes if isinstance(meta_classes, int) and meta_classes > 0 else default_num_classes(dataset)
    batch = backend.batch or 1
    predicted_original = predicted_compressed = None
    if table is not None:  # table lookups first: a table without latency fails before minutes of timing
        if meta.get("batch") is not None and int(meta["batch"]) != batch:
            log.warning("the table was built at batch %s, the bench runs at batch %d: predictions will not match", meta["batch"], batch)
        if meta.get("backend") not in (None, "gpu"):
            log.warning("the table comes from the '%s' backend; it has no measured latency to compare", meta["backend"])
        predicted_original = table.model_cost({}, metric="latency_s")
        if ranks:
            predicted_compressed = table.model_cost(dict(ranks), metric="latency_s")
    model = build_model(model_name, num_classes=num_classes, in_channels=input_size[0])
    model.eval()
    eager = None
    if getattr(backend, "cuda_graphs", False):
        # Graph replay gives GPU time (what the table holds); eager launches give what a
        # plain PyTorch user sees. Both are reported.
        eager = copy.copy(backend)
        eager.cuda_graphs = False
    result = BenchResult(
        model=model_name,
        batch=batch,
        input_size=tuple(input_size),  # type: ignore[arg-type]
        backend=backend.fingerprint(),
        original=_measure(backend, model, batch, input_size),
        original_eager=None if eager is None else _measure(eager, model, batch, input_size),
        ranks=dict(ranks or {}),
        predicted_original_s=predicted_original,
        predicted_compressed_s=predicted_compressed,
        table=None if table_path is None else str(table_path),
    )
    if ranks:
        from haloc_hw.decompose import decompose_model

        compressed = decompose_model(model, dict(ranks), n_iter=n_iter).eval()
        result.compressed = _measure(backend, compressed, batch, input_size)
        if eager is not None:
            result.compressed_eager = _measure(eager, compressed, batch, input_size)
    return result


def format_result(result: BenchResult) -> str:
    """The human-readable report the command prints."""
    fp = result.backend
    timer = {"cuda_graph": "CUDA graph replay", "cuda_events": "eager launches"}.get(fp.get("timer", ""), "wall clock")
    has_eager = result.original_eager is not None
    lines = [
        f"{result.model} {'x'.join(str(v) for v in result.input_size)}, batch {result.batch}, "
        f"{fp.get('dtype')} {fp.get('memory_format')} on {fp.get('device_name')} ({fp.get('device')}), timed by {timer}",
        f"{'':12} {'latency ms (p10-p90)':>26} {'images/s':>11}"
        + (f" {'eager ms':>9} {'eager img/s':>11}" if has_eager else "")
        + (f" {'table ms':>10} {'gap':>8}" if result.table else ""),
    ]

    def row(label: str, m: Measured, predicted: float | None, e: Measured | None = None) -> str:
        text = f"{label:12} {m.latency_s * 1e3:10.3f} ({m.p10_s * 1e3:.3f}-{m.p90_s * 1e3:.3f}) {m.throughput:11.1f}"
        if has_eager:
            text += f" {e.latency_s * 1e3:9.3f} {e.throughput:11.1f}" if e is not None else f" {'-':>9} {'-':>11}"
        if result.table:
            gap = result.gap_pct(predicted, m)
            text += f" {predicted * 1e3:10.3f} {gap:+7.1f}%" if predicted is not None and gap is not None else f" {'-':>10} {'-':>8}"
        return text

    lines.append(row("original", result.original, result.predicted_original_s, result.original_eager))
    if result.compressed is not None:
        lines.append(row("compressed", result.compressed, result.predicted_compressed_s, result.compressed_eager))
        lines.append(f"speed-up {result.speedup:.3f}x with {len(result.ranks)} decomposed layer(s)")
    if result.table:
        lines.append(
            "gap = (table sum - measured) / measured; the table sums convolutions and linear layers only"
            " (no batch norm, activations, adds or pooling)"
        )
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    from haloc_hw.cost.gpu import DEFAULT_REPEATS, DEFAULT_WARMUP, DTYPES, MEMORY_FORMATS

    p = subparsers.add_parser(
        "bench",
        help="measure throughput of the original and the compressed model",
        description="Measured throughput of a model before and after Tucker-2 compression, and the gap to a cost table's prediction.",
    )
    p.add_argument("--model", required=True, help="resnet20, vgg16, resnet18 or mobilenet_v2")
    p.add_argument("--ranks", type=Path, metavar="FILE", help="ranks.json from 'haloc-hw search' (omit: original only)")
    p.add_argument("--batch", type=int, default=128, help="images per forward pass (default 128)")
    p.add_argument("--dtype", default="bf16", choices=DTYPES, help="default bf16")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--memory-format", default="channels_last", choices=MEMORY_FORMATS, help="default channels_last")
    p.add_argument("--table", type=Path, metavar="FILE", help="cost table to compare its predicted latency with")
    p.add_argument("--input-size", metavar="C,H,W", help="per-image input (default: the table's, else 3,224,224 for ImageNet models, 3,32,32 otherwise)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier width (default: the table's, else 1000 for ImageNet models, 10 otherwise)")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed forward passes (default {DEFAULT_WARMUP})")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help=f"timed forward passes (default {DEFAULT_REPEATS})")
    p.add_argument("--threads", type=int, default=None, help="CPU threads with --device cpu")
    p.add_argument("--no-cuda-graphs", dest="cuda_graph", action="store_false",
                   help="time eager launches only (default on CUDA: CUDA graph replay, plus eager for comparison)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haloc_hw.cost.gpu import GpuCostModel
    from haloc_hw.fileio import write_json_atomic

    ranks = load_ranks(args.ranks) if args.ranks else None
    backend = GpuCostModel(
        device=args.device,
        dtype=args.dtype,
        batch=args.batch,
        memory_format=args.memory_format,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        progress=False,
        cuda_graphs=args.cuda_graph,
    )
    result = run_bench(
        args.model,
        backend,
        ranks=ranks,
        input_size=parse_input_size(args.input_size) if args.input_size else None,
        num_classes=args.num_classes,
        table_path=args.table,
    )
    print(format_result(result))
    if args.json:
        write_json_atomic(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0
