"""Render one design point and price it: the only place co-design touches the front end and the estimator.

:func:`price_point` turns (space, variable values) into what the cost model needs (an
:class:`~haloc_hw.spec.model.Architecture`, an :class:`~haloc_hw.spec.model.EnergyTable`
and :class:`~haloc_hw.spec.mapping.Constraints`) plus the estimated area. It goes through

* ``haloc_hw.spec.design.load_design(files, set_values=values)`` (Jinja2, ``variables:``,
  expressions, compound components) when the front end provides it, and
* ``haloc_hw.energy.estimate_design(design)`` for energy per action and area when the
  estimator provides it.

Until those modules are on this branch, an INTERIM path stands in, and every result says
so (``energy_source`` / ``area_source`` start with ``interim``): the Jinja2 top file is
rendered with the real ``jinja2`` (``include``, ``include_all``, ``cwd``, ``path_exists``,
``add_to_path``), variables and attribute expressions are evaluated with
:func:`haloc_hw.codesign.expr.evaluate`, and energies and areas come from a size-scaling
rule anchored on the shipped Eyeriss ERT (see :func:`_interim_energy`). It is a test
vehicle for the co-design loop, not an estimate to report.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from haloc_hw.codesign.expr import evaluate
from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PricedPoint:
    """A rendered and priced design point: what the cost model and the Pareto front need."""

    arch: Any  # Architecture
    energy: Any  # EnergyTable
    constraints: Any  # Constraints
    area_mm2: float
    energy_source: str
    area_source: str
    variables: dict[str, Any] = field(default_factory=dict)


def _has(module: str, name: str) -> bool:
    import importlib

    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


def price_point(design_files: Sequence[Path], constraint_files: Sequence[Path], values: Mapping[str, Any], *,
                workdir: Path) -> PricedPoint:
    """Render ``design_files`` with ``values`` set, and price it (see the module docstring).

    ``workdir`` receives the files written on the way (the rendered design, its ERT), so a
    point can be inspected or rerun with ``haloc-hw cost`` by hand.
    """
    from haloc_hw.spec.constraints import load_constraints
    from haloc_hw.spec.energy import load_energy_table

    workdir.mkdir(parents=True, exist_ok=True)
    design = None
    if _has("haloc_hw.spec.design", "load_design"):
        from haloc_hw.spec.design import load_design  # type: ignore[attr-defined]

        design = load_design(list(design_files), set_values=dict(values))
        arch, variables = design.architecture, dict(design.variables)
    else:
        arch, variables = _interim_render(design_files, values)
    if design is not None:
        # the design's own constraints (node constraints and constraint sections of its files),
        # then the space's constraint files, merged as one set
        import dataclasses

        from haloc_hw.spec.constraints import merge_directives
        from haloc_hw.spec.mapping import Constraints

        extra = load_constraints(list(constraint_files), dataclasses.replace(arch, node_constraints=()))
        source = ", ".join(s for s in (str(design_files[0]), extra.source) if s)
        constraints = Constraints(merge_directives([*design.constraints, *extra.directives], source), source)
    else:
        constraints = load_constraints(list(constraint_files), arch)
    if design is not None and _has("haloc_hw.energy", "estimate_design"):
        from haloc_hw.energy import estimate_design  # type: ignore[attr-defined]
        from haloc_hw.fileio import write_yaml_atomic

        est = estimate_design(design)
        write_yaml_atomic(workdir / "ERT.yaml", est.ert_doc())
        write_yaml_atomic(workdir / "ART.yaml", est.art_doc())
        energy = load_energy_table(workdir / "ERT.yaml", arch)
        return PricedPoint(arch, energy, constraints, float(est.total_area_um2) / 1e6, "estimator", "estimator",
                           variables)
    energy, area_mm2 = _interim_energy(arch)
    return PricedPoint(arch, energy, constraints, area_mm2, "interim-scaling", "interim-scaling", variables)


# ---------------------------------------------------------------------------------------
# INTERIM rendering (until haloc_hw.spec.design lands)


def _interim_render(files: Sequence[Path], values: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    import glob

    import jinja2
    import yaml

    from haloc_hw.spec.loader import arch_from_dict
    from haloc_hw.spec.yamltags import SpecLoader, TaggedNode

    if len(files) != 1:
        raise HalocError("the interim renderer reads one top file", file=files[0] if files else None, key="design",
                         fix="give one Jinja2 top file until the v0.4 front end is merged")
    top = Path(files[0])
    included: dict[str, Any] = {}

    def load_part(path: str, key: str | None) -> Any:
        p = Path(path) if Path(path).is_absolute() else top.parent / path
        if not p.is_file():
            raise HalocError(f"included file '{path}' not found", file=top, key="include", fix="fix the path")
        doc = yaml.load(render(p.read_text(), p), Loader=SpecLoader)  # noqa: S506 - SpecLoader is a SafeLoader
        for part in (key or "").split("."):
            if part:
                doc = doc.get(part) if isinstance(doc, dict) else None
        return doc

    def placeholder(obj: Any) -> str:
        name = f"__haloc_include_{len(included)}__"
        included[name] = obj
        return name

    def include(path: str, key: str | None = None) -> str:
        return placeholder(load_part(path, key))

    def include_all(pattern: str, key: str | None = None) -> str:
        pat = pattern if Path(pattern).is_absolute() else str(top.parent / pattern)
        items: list[Any] = []
        for p in sorted(glob.glob(pat)):
            part = load_part(p, key)
            items.extend(part if isinstance(part, list) else [part])
        return placeholder(items)

    def render(text: str, path: Path) -> str:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        env.globals.update(include=include, include_all=include_all, cwd=lambda: str(path.parent.resolve()),
                           path_exists=lambda p: Path(p).exists(), add_to_path=lambda p: "")
        try:
            return env.from_string(text).render(**dict(values))
        except jinja2.TemplateError as err:
            raise HalocError(f"template does not render: {err}", file=path, key="jinja2",
                             fix="define the variable (--set NAME=VALUE) or fix the template") from None

    doc = yaml.load(render(top.read_text(), top), Loader=SpecLoader)  # noqa: S506

    def expand(obj: Any) -> Any:
        if isinstance(obj, str) and obj in included:
            return expand(included[obj])
        if isinstance(obj, dict):
            return {k: expand(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [expand(v) for v in obj]
        if isinstance(obj, TaggedNode):
            return TaggedNode(obj.tag, expand(obj.body), obj.line)
        return obj

    doc = expand(doc)
    variables: dict[str, Any] = {}
    raw_vars = {**(doc.get("variables") or {}), **dict(values)}
    for name, raw in raw_vars.items():
        if name == "version":
            continue
        variables[name] = _maybe_eval(raw, variables, top, f"variables.{name}")

    def walk(nodes: list[Any], scope: dict[str, Any]) -> None:
        for i, node in enumerate(nodes):
            if not isinstance(node, TaggedNode):
                continue
            body = node.body
            attrs = body.get("attributes") or {}
            local = dict(scope)
            for k, v in attrs.items():
                attrs[k] = _maybe_eval(v, local, top, f"{body.get('name')}.attributes.{k}")
                local[k] = attrs[k]
            if isinstance(body.get("spatial"), dict):
                for k, v in body["spatial"].items():
                    body["spatial"][k] = _maybe_eval(v, local, top, f"{body.get('name')}.spatial.{k}")
            if "nodes" in body:
                walk(body["nodes"], local)
            if node.tag == "Container":
                scope.update({k: v for k, v in attrs.items()})

    arch_doc = doc.get("architecture") or {}
    walk(arch_doc.get("nodes") or [], dict(variables))
    return arch_from_dict({"architecture": arch_doc}, file=top), variables


def _maybe_eval(value: Any, scope: Mapping[str, Any], file: Path, key: str) -> Any:
    """Timeloopfe's rule as far as the interim path needs it: a string that evaluates becomes the value."""
    if not isinstance(value, str):
        return value
    try:
        return evaluate(value, scope, file=file, key=key)
    except HalocError:
        return value


# ---------------------------------------------------------------------------------------
# INTERIM pricing (until haloc_hw.energy lands)

# Anchors: the shipped Eyeriss ERT (arch/eyeriss.ert.yaml, 45 nm, 16-bit words): a 12-word
# regfile costs 0.237 pJ and a 192-word one 1.586 pJ per access; the 65536-word GLB 74.1 pJ
# per 4-word block; DRAM 128 pJ per word; a 16-bit MAC 2.2 pJ. Between them energy per
# word grows with the square root of the capacity in bits (wordline/bitline length), and
# area is a per-bit cell area (SRAM 0.6 um^2, regfile 2.5 um^2 at 45 nm) plus 3000 um^2
# per 16-bit MAC scaled by width squared.
_RF_PJ_PER_SQRT_BIT = (1.586 - 0.237) / (math.sqrt(192 * 16) - math.sqrt(12 * 16))
_RF_PJ_OFFSET = 0.237 - _RF_PJ_PER_SQRT_BIT * math.sqrt(12 * 16)
_SRAM_PJ_PER_SQRT_BIT = (74.144 / 4) / math.sqrt(65536 * 16)


def _interim_energy(arch: Any) -> tuple[Any, float]:
    from haloc_hw.spec.model import ActionEnergy, EnergyTable

    storage = {}
    area_um2 = 0.0
    for lvl in arch.levels:
        if lvl.fanout_only:
            continue
        words = lvl.block_size * lvl.cluster_size
        if lvl.is_dram:
            per_word = 128.0 * lvl.word_bits / 16
        else:
            bits = (lvl.size_words or 1) * lvl.word_bits
            sram = "sram" in lvl.cls.lower() or bits > 8192
            per_word = (_SRAM_PJ_PER_SQRT_BIT * math.sqrt(bits) if sram
                        else max(0.05, _RF_PJ_OFFSET + _RF_PJ_PER_SQRT_BIT * math.sqrt(bits)))
            area_um2 += lvl.instances * bits * (0.6 if sram else 2.5)
        e = per_word * words
        storage[lvl.name] = ActionEnergy(e, e, e, e)
    bits = arch.arithmetic.word_bits
    mac = 2.2 * (bits / 16) ** 2
    area_um2 += arch.arithmetic.instances * 3000.0 * (bits / 16) ** 2
    return EnergyTable(storage=storage, compute=mac, source="interim size scaling (codesign.design_point)"), area_um2 / 1e6


def fingerprint(obj: Any) -> str:
    """sha256 of a canonical JSON rendering (for table sharing between identical hardware)."""
    from haloc_hw.cost.table import canonical_json

    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
