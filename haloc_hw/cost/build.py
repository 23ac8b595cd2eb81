"""The one way a cost table is built: for ``haloc-hw tables``, ``search``, ``baseline``, ``sweep`` and co-design.

A table prices one model at one input size (:class:`TableTarget`) on one arch with one
backend (:class:`~haloc_hw.settings.TableSettings`). Every caller goes through
:func:`build_cost_table`, so every table carries the same metadata (model, dataset, classes,
input size, batch, arch hash, template variables, candidate rule) and a serial-only
backend is never run in parallel, whoever asks.

Layer shapes come from the model (:func:`model_layers`, needs torch) unless the table
already holds them for the same target (:func:`cached_layers`): a rerun of a built table
then needs no torch at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.errors import HalocError
from haloc_hw.fileio import file_sha256
from haloc_hw.settings import TableSettings
from haloc_hw.workload import LayerInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableTarget:
    """What a table prices: ``model`` sized for ``dataset`` at ``input_size`` (C, H, W), ``batch`` samples per workload."""

    model: str
    dataset: str
    num_classes: int
    input_size: tuple[int, int, int]
    batch: int = 1

    def metadata(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "num_classes": self.num_classes,
                "input_size": list(self.input_size), "workload_batch": self.batch}


def model_layers(target: TableTarget) -> list[LayerInfo]:
    """Layer shapes of a fresh ``target.model`` (torch; the weights do not change shapes)."""
    from haloc_hw.models import build_model
    from haloc_hw.workload import extract_shapes

    model = build_model(target.model, num_classes=target.num_classes, in_channels=target.input_size[0])
    return extract_shapes(model, target.input_size, target.batch)


def table_layers(table: Any) -> list[LayerInfo]:
    """The layers a table was built for, as :class:`LayerInfo` (no torch)."""
    return [LayerInfo(name=l.name, shape=l.shape, kind=l.kind, decomposable=l.decomposable)
            for l in (table.layer(n) for n in table.layers())]


def cached_layers(path: Path, target: TableTarget) -> list[LayerInfo] | None:
    """The layers of an existing table at ``path`` built for the same ``target``; ``None`` otherwise.

    An unreadable file is ``None`` too: the build that follows reports it properly.
    """
    from haloc_hw.cost.table import CostTable

    if not path.is_file():
        return None
    try:
        table = CostTable.open(path)
    except HalocError:
        return None
    meta = table.metadata
    mine = target.metadata()
    same = all(meta.get(k) == v for k, v in mine.items() if k != "workload_batch")
    if not same or meta.get("workload_batch", meta.get("batch")) != target.batch:
        return None
    return table_layers(table)


def candidates_of(settings: TableSettings, layers: Sequence[LayerInfo]) -> dict[str, list[tuple[int, int]]]:
    """The rank candidates of every decomposable layer under ``settings``' rule; refuses a rule that leaves none."""
    from haloc_hw.decompose import rank_candidates

    if settings.step is not None and settings.step < 1:
        raise HalocError(f"--step must be at least 1, got {settings.step}", key="--step",
                         fix="pass a positive step, or leave --step out (8/16/32 by layer width)")
    found = {i.name: rank_candidates(i.shape, step=settings.step, equal=settings.equal,
                                     max_macs_ratio=settings.max_macs_ratio) for i in layers if i.decomposable}
    decomposable = [i for i in layers if i.decomposable]
    if decomposable and settings.step is not None:
        # a step wider than every layer leaves nothing to choose (a step equal to the width
        # leaves only the full rank, which compresses nothing: a table of originals, still valid)
        widest = max(decomposable, key=lambda i: min(i.shape.C, i.shape.M))
        narrow = min(widest.shape.C, widest.shape.M)
        if settings.step > narrow:
            raise HalocError(f"--step {settings.step} leaves no rank candidate in any layer: the widest, {widest.name} "
                             f"(C={widest.shape.C}, M={widest.shape.M}), has only {narrow} channels",
                             key="--step", fix=f"use a step of at most {narrow}, or leave --step out")
    return found


def table_metadata(target: TableTarget, settings: TableSettings, arch_path: Path | None) -> dict[str, Any]:
    """What a table records about how it was made (beside what the backend records itself)."""
    bs = settings.backend_settings
    # a measured backend times at its own batch (a GPU's latency per image depends on it); the others price `batch` samples
    batch = getattr(bs, "batch", None) or target.batch
    return {**target.metadata(), "batch": batch,
            "arch_path": None if arch_path is None else str(arch_path),
            "arch_sha256": None if arch_path is None else file_sha256(arch_path),
            "set_values": list(getattr(bs, "set_values", ()) or ()),
            "candidates": {"step": settings.step, "equal": settings.equal, "max_macs_ratio": settings.max_macs_ratio}}


def resolve_arch(settings: TableSettings, arch: str | None) -> Path | None:
    """The arch file a table of ``settings.backend`` is priced on (``None`` for a backend that needs none)."""
    from haloc_hw.cost.backends import get_backend_spec
    from haloc_hw.spec.shipped import resolve_spec_path

    if not get_backend_spec(settings.backend).needs_arch:
        return None
    if arch is None:
        raise HalocError(f"backend '{settings.backend}' needs an architecture", key="--arch",
                         fix="pass --arch arch/eyeriss.yaml")
    return resolve_spec_path(arch, key="--arch")


def check_backend(settings: TableSettings, arch_path: Path | None, out_dir: Path) -> None:
    """Create the backend once, writing nothing: a bad arch, energy table, device or missing tool fails here."""
    from haloc_hw.cost.backends import BackendContext, create_backend

    create_backend(settings.backend, settings.backend_settings, BackendContext(arch_path=arch_path, out_dir=out_dir))


def build_cost_table(target: TableTarget, settings: TableSettings, arch_path: Path | None, path: Path, *,
                     layers: Sequence[LayerInfo] | None = None, strict: bool | str = True, rebuild: bool = False,
                     progress: bool = True, scheduler: str | None = None, scheduler_timeout_s: float = 10.0) -> Any:
    """Build (or complete) the table of ``target`` at ``path``; entries already there are reused.

    ``layers`` defaults to :func:`cached_layers` or else :func:`model_layers`. ``strict`` as in
    :func:`~haloc_hw.cost.table.build_table`. Returns the :class:`~haloc_hw.cost.table.CostTable`.
    """
    from haloc_hw.cost.backends import BackendContext, create_backend, get_backend_spec
    from haloc_hw.cost.executors import make_executor
    from haloc_hw.cost.table import build_table

    if settings.jobs is not None and settings.jobs < 1:
        raise HalocError(f"--jobs must be at least 1, got {settings.jobs}", key="--jobs",
                         fix="pass --jobs 1 or more, or leave it out (one per CPU core)")
    if layers is None:
        layers = (None if rebuild else cached_layers(path, target)) or model_layers(target)
    candidates = candidates_of(settings, layers)
    spec = get_backend_spec(settings.backend)
    if spec.serial_only:
        if scheduler or (settings.jobs or 0) > 1:
            log.warning("backend '%s' measures one workload at a time: ignoring --jobs/--scheduler", spec.name)
        executor = make_executor(1)
    else:
        executor = make_executor(settings.jobs, scheduler, timeout_s=scheduler_timeout_s)
    try:
        backend = create_backend(settings.backend, settings.backend_settings,
                                 BackendContext(arch_path=arch_path, out_dir=path.parent, jobs=executor.workers))
        return build_table(list(layers), backend, path, candidates_fn=lambda info: candidates.get(info.name, []),
                           executor=executor, progress=progress, strict=strict, rebuild=rebuild,
                           metadata=table_metadata(target, settings, arch_path))
    finally:
        executor.close()


def check_table_fits(table: Any, layers: Sequence[LayerInfo], path: Path) -> None:
    """The table must describe this model at this input size: same layers, same shapes."""
    known = set(table.layers())
    missing = [info.name for info in layers if info.name not in known]
    fix_size = ("build the table for this model and input size (haloc-hw tables --dataset NAME sizes it for a "
                "dataset), or drop --table")
    if missing:
        raise HalocError(f"cost table lacks layers {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}",
                         file=path, key="layers", fix=fix_size)
    for info in layers:
        if not same_shape(table.layer(info.name).shape, info.shape):
            meta = table.metadata
            built = f" (the table is for {meta.get('model')} on {meta.get('dataset')}, input {meta.get('input_size')})" \
                if meta.get("dataset") else ""
            raise HalocError(f"layer {info.name} has another shape in the table than in the model{built}", file=path,
                             key=info.name, fix=fix_size)


def same_shape(a: Any, b: Any) -> bool:
    """Two layer shapes price alike (the batch aside)."""
    return (a.C, a.M, a.R, a.S, a.P, a.Q, a.G) == (b.C, b.M, b.R, b.S, b.P, b.Q, b.G)
