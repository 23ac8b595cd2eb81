"""Backend registry: ``--backend NAME`` -> a factory building the cost model from typed settings.

Adding a backend takes one :func:`register_backend` call with a :class:`BackendSpec`: its
name, a help line, a factory ``(settings, ctx) -> CostModel`` and the frozen dataclass of
its settings (``settings_type``). The CLI offers each settings field as an option (see
:func:`haloc_hw.settings.option`) and builds the settings once; a backend never sees the
command line. Modules listed in :data:`PLUGIN_MODULES` are imported when the registry is
first used; each may call :func:`register_backend` at import time (a missing optional
module is skipped).

Built in: ``analytical`` (default, no external tool), ``timeloop`` (real binaries) and
``gpu`` (measured latency; PyTorch is imported only when one is built).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from haloc_hw.errors import HalocError
from haloc_hw.settings import AnalyticalSettings, GpuSettings, TimeloopSettings

log = logging.getLogger(__name__)

# Modules that register more backends when imported.
PLUGIN_MODULES: list[str] = []


@dataclass(frozen=True)
class BackendContext:
    """What a factory needs besides its settings.

    ``arch_path``: the one arch this backend instance is for (``--arch`` may repeat);
    ``out_dir``: the table's folder (backends keep their work files under it);
    ``jobs``: how many evaluations run side by side (Timeloop pins its threads by it).
    """

    arch_path: Path | None
    out_dir: Path
    jobs: int = 1


Factory = Callable[[Any, BackendContext], Any]


@dataclass(frozen=True)
class BackendSpec:
    name: str
    help: str
    factory: Factory
    settings_type: type | None = None
    needs_arch: bool = True
    # Measurements that must not share the machine (GPU timing) run one at a time in the
    # CLI process whatever --jobs says.
    serial_only: bool = False

    def default_settings(self) -> Any:
        return None if self.settings_type is None else self.settings_type()


BACKENDS: dict[str, BackendSpec] = {}
_plugins_loaded = False


def register_backend(spec: BackendSpec, *, replace: bool = False) -> None:
    """Add a backend; registering a taken name again is an error unless ``replace``."""
    if spec.name in BACKENDS and not replace and BACKENDS[spec.name] is not spec:
        existing = BACKENDS[spec.name]
        if existing.factory is spec.factory:
            return
        raise HalocError(f"backend '{spec.name}' is registered twice", key="backend", fix="give the new backend another name")
    BACKENDS[spec.name] = spec


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                log.warning("backend module %s could not be imported: %s", module, err)


def available_backends() -> dict[str, BackendSpec]:
    _load_plugins()
    return dict(BACKENDS)


def get_backend_spec(name: str) -> BackendSpec:
    specs = available_backends()
    if name not in specs:
        raise HalocError(f"unknown backend '{name}'", key="backend", fix=f"use one of {', '.join(sorted(specs))}")
    return specs[name]


def create_backend(name: str, settings: Any, ctx: BackendContext) -> Any:
    """Build backend ``name`` for one arch; ``settings`` ``None`` means the backend's defaults."""
    spec = get_backend_spec(name)
    if spec.needs_arch and ctx.arch_path is None:
        raise HalocError(f"backend '{name}' needs an architecture", key="arch", fix="pass --arch arch/eyeriss.yaml")
    if settings is None:
        settings = spec.default_settings()
    elif spec.settings_type is not None and not isinstance(settings, spec.settings_type):
        raise HalocError(f"backend '{name}' takes {spec.settings_type.__name__}, got {type(settings).__name__}",
                         key="backend", fix="build the settings with the backend's settings type")
    return spec.factory(settings, ctx)


# ---------------------------------------------------------------------------------------
# built-in backends
# ---------------------------------------------------------------------------------------


def _analytical(s: AnalyticalSettings, ctx: BackendContext) -> Any:
    from haloc_hw.cost.analytical.backend import AnalyticalCostModel

    if not s.set_values:
        return AnalyticalCostModel.from_files(ctx.arch_path, constraints_path=list(s.constraints) or None,
                                              ert_path=s.ert, clock_hz=s.clock_hz)
    # template variables: the arch (and its node constraints) rendered with them, as `haloc-hw cost` does
    from haloc_hw.spec.constraints import load_constraints
    from haloc_hw.spec.design import parse_set_values
    from haloc_hw.spec.energy import load_energy_table
    from haloc_hw.spec.loader import load_arch
    from haloc_hw.spec.shipped import default_constraints_paths, require_ert_path

    values = parse_set_values(list(s.set_values))
    arch = load_arch(ctx.arch_path, set_values=values)
    constraints = load_constraints(list(s.constraints) or default_constraints_paths(ctx.arch_path), arch)
    energy = load_energy_table(require_ert_path(ctx.arch_path, s.ert), arch)
    return AnalyticalCostModel(arch, energy, constraints, clock_hz=s.clock_hz)


def _timeloop(s: TimeloopSettings, ctx: BackendContext) -> Any:
    from haloc_hw.cost.timeloop import DEFAULT_TIMEOUT_S, TimeloopCostModel
    from haloc_hw.spec.shipped import default_constraints_paths, default_mapper_path

    mapper_path: Any = s.mapper  # one the user names must exist (from_files says so)
    if mapper_path is None and default_mapper_path().is_file():
        mapper_path = default_mapper_path()
    threads = s.threads
    if threads is None and ctx.jobs > 1:
        threads = 1  # several mappers side by side: one thread each (else the mapper file's num-threads)
    return TimeloopCostModel.from_files(
        ctx.arch_path,
        constraints_path=list(s.constraints) or default_constraints_paths(ctx.arch_path),
        ert_path=s.ert,
        mapper_path=mapper_path,
        jobs_dir=ctx.out_dir / "jobs",
        bin_dir=s.bin_dir,
        components=s.components,
        threads=threads,
        timeout_s=DEFAULT_TIMEOUT_S if s.timeout_s is None else s.timeout_s,
        clock_hz=s.clock_hz,
    )


def _gpu(s: GpuSettings, ctx: BackendContext) -> Any:
    from haloc_hw.cost.gpu import DEFAULT_REPEATS, DEFAULT_WARMUP, GpuCostModel

    if ctx.jobs > 1:
        log.warning("gpu backend: %d workers take turns on the device (timings never overlap); --jobs 1 avoids one "
                    "CUDA context and cuDNN autotuning per worker", ctx.jobs)
    return GpuCostModel(
        device=s.device or "cuda", dtype=s.dtype, batch=s.batch or 128, memory_format=s.memory_format,
        warmup=DEFAULT_WARMUP if s.warmup is None else s.warmup,
        repeats=DEFAULT_REPEATS if s.repeats is None else s.repeats,
        threads=s.threads, cuda_graphs=s.cuda_graphs,
    )


register_backend(BackendSpec("analytical", "embedded Timeloop-compatible model (no external tool)", _analytical,
                             AnalyticalSettings))
register_backend(BackendSpec("timeloop", "real timeloop-mapper / timeloop-model runs", _timeloop, TimeloopSettings))
register_backend(BackendSpec("gpu", "measured latency with PyTorch on a CUDA GPU (or the CPU): --device, --dtype, --batch",
                             _gpu, GpuSettings, needs_arch=False))
