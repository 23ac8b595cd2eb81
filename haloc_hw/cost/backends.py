"""Backend registry: ``--backend NAME`` -> a factory building the cost model from CLI arguments.

Adding a backend takes one :func:`register_backend` call with a :class:`BackendSpec`: its
name, a help line, a factory ``(args, ctx) -> CostModel`` and optionally a function adding
its own CLI options (``--dtype``, ``--device`` ...). Modules listed in
:data:`PLUGIN_MODULES` are imported when the registry is first used; each may call
:func:`register_backend` at import time (a missing optional module is skipped).

Built in: ``analytical`` (default, no external tool) and ``timeloop`` (real binaries).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)

# Modules that register more backends when imported (e.g. the measured GPU backend).
PLUGIN_MODULES: list[str] = ["haloc_hw.cost.gpu"]


@dataclass(frozen=True)
class BackendContext:
    """What a factory needs besides the parsed arguments.

    ``arch_path``: the one arch this backend instance is for (``--arch`` may repeat);
    ``out_dir``: the table's folder (backends keep their work files under it);
    ``jobs``: how many evaluations run side by side (Timeloop pins its threads by it).
    """

    arch_path: Path | None
    out_dir: Path
    jobs: int = 1


Factory = Callable[[argparse.Namespace, BackendContext], Any]


@dataclass(frozen=True)
class BackendSpec:
    name: str
    help: str
    factory: Factory
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    needs_arch: bool = True
    # Measurements that must not share the machine (GPU timing) run one at a time in the
    # CLI process whatever --jobs says.
    serial_only: bool = False


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


def create_backend(name: str, args: argparse.Namespace, ctx: BackendContext) -> Any:
    """Build backend ``name`` for one arch from the parsed CLI arguments."""
    spec = get_backend_spec(name)
    if spec.needs_arch and ctx.arch_path is None:
        raise HalocError(f"backend '{name}' needs an architecture", key="arch", fix="pass --arch arch/eyeriss.yaml")
    return spec.factory(args, ctx)


class _SharedOptionsGroup:
    """An argument group that skips options the parser already has.

    Several sub-commands (tables, search, ...) and several backends may define the same
    option (``--device``, ``--batch``); the first definition wins and is shared, instead of
    argparse refusing to build the parser.
    """

    def __init__(self, group: Any) -> None:
        self._group = group

    def add_argument(self, *flags: str, **kwargs: Any) -> Any:
        try:
            return self._group.add_argument(*flags, **kwargs)
        except argparse.ArgumentError:
            log.debug("option %s already defined; sharing it", "/".join(flags))
            return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._group, name)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every backend's own options to ``parser`` (each in its own argument group)."""
    for spec in available_backends().values():
        if spec.add_arguments is not None:
            spec.add_arguments(_SharedOptionsGroup(parser.add_argument_group(f"{spec.name} backend")))


# ---------------------------------------------------------------------------------------
# built-in backends
# ---------------------------------------------------------------------------------------


def _constraints_arg(args: argparse.Namespace) -> list[str] | None:
    value = getattr(args, "constraints", None)
    if not value:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _analytical(args: argparse.Namespace, ctx: BackendContext) -> Any:
    from haloc_hw.cost.analytical.backend import AnalyticalCostModel

    return AnalyticalCostModel.from_files(
        ctx.arch_path, constraints_path=_constraints_arg(args), ert_path=getattr(args, "ert", None),
        clock_hz=getattr(args, "clock_hz", None),
    )  # fmt: skip


def _timeloop(args: argparse.Namespace, ctx: BackendContext) -> Any:
    from haloc_hw.cost.timeloop import DEFAULT_TIMEOUT_S, TimeloopCostModel
    from haloc_hw.spec.shipped import default_constraints_paths, default_mapper_path

    mapper_path = getattr(args, "mapper", None)  # one the user names must exist (from_files says so)
    if mapper_path is None and default_mapper_path().is_file():
        mapper_path = default_mapper_path()
    threads = getattr(args, "timeloop_threads", None)
    if threads is None and ctx.jobs > 1:
        threads = 1  # several mappers side by side: one thread each (else the mapper file's num-threads)
    timeout_s = getattr(args, "timeloop_timeout", None)
    return TimeloopCostModel.from_files(
        ctx.arch_path,
        constraints_path=_constraints_arg(args) or default_constraints_paths(ctx.arch_path),
        ert_path=getattr(args, "ert", None),
        mapper_path=mapper_path,
        jobs_dir=ctx.out_dir / "jobs",
        bin_dir=getattr(args, "timeloop_bin", None),
        components=getattr(args, "accelergy_components", None) or (),
        threads=threads,
        timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
        clock_hz=getattr(args, "clock_hz", None),
    )


def _timeloop_arguments(group: Any) -> None:
    group.add_argument("--timeloop-bin", metavar="DIR", help="folder holding timeloop-mapper and timeloop-model (default: PATH)")
    group.add_argument("--mapper", metavar="FILE", help="mapper settings YAML (default: mappings/mapper.yaml when present)")
    group.add_argument("--timeloop-threads", type=int, metavar="N",
                       help="mapper num-threads (default: 1 when --jobs > 1, else the mapper file's value)")  # fmt: skip
    group.add_argument("--accelergy-components", nargs="+", metavar="FILE",
                       help="component files passed to accelergy (only when accelergy is on PATH)")  # fmt: skip
    group.add_argument("--timeloop-timeout", type=float, metavar="S", help="seconds per Timeloop process (default 600)")


register_backend(BackendSpec("analytical", "embedded Timeloop-compatible model (no external tool)", _analytical))
register_backend(BackendSpec("timeloop", "real timeloop-mapper / timeloop-model runs", _timeloop, _timeloop_arguments))
